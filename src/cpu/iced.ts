import { createRequire } from 'node:module';
import type * as Iced from 'iced-x86';

/**
 * iced-x86, the decoder, loaded with require. It is a CommonJS package: an
 * ESM import of it makes Node scan its 900 KB of glue code for export names on
 * every start, about a tenth of the time a verdict at extract_kernel takes.
 * Everything in src imports iced from here.
 */
const iced = createRequire(import.meta.url)('iced-x86') as typeof Iced;

export const { Code, Decoder, DecoderError, DecoderOptions, Formatter, FormatterSyntax, InstructionInfoFactory, MemorySize, Mnemonic, OpAccess, OpKind, Register } = iced;
export type Code = Iced.Code;
export type Decoder = Iced.Decoder;
export type DecoderError = Iced.DecoderError;
export type DecoderOptions = Iced.DecoderOptions;
export type Formatter = Iced.Formatter;
export type FormatterSyntax = Iced.FormatterSyntax;
export type InstructionInfoFactory = Iced.InstructionInfoFactory;
export type MemorySize = Iced.MemorySize;
export type Mnemonic = Iced.Mnemonic;
export type OpAccess = Iced.OpAccess;
export type OpKind = Iced.OpKind;
export type Register = Iced.Register;
export type Instruction = Iced.Instruction;
