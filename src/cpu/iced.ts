import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type * as Iced from 'iced-x86';
import { cacheDir } from '../kernel/cache-dir.js';
import { runCommonJsCached } from '../kernel/code-cache.js';
import { deferredWebAssembly } from './deferred-wasm.js';

/**
 * iced-x86, the decoder, loaded once per process; everything in src imports
 * it from here. It is a CommonJS package whose 900 KB of glue code Node would
 * compile on every start (and, imported as ESM, also scan for export names):
 * a tenth of the time a verdict at extract_kernel takes. So the glue is
 * compiled here, as Node's CommonJS loader would wrap it, with a V8 code
 * cache kept in the bzemu cache directory. V8 checks a cache against the
 * source and its own version and flags, and rejects one that does not fit;
 * the file name also carries the versions, so different Node or iced
 * installs keep their own. Without a usable cache directory the glue is just
 * compiled. The glue's WebAssembly is compiled when first called
 * (deferred-wasm.ts): a boot served by saved decodes may never call it.
 */
function loadIced(): typeof Iced {
  const require = createRequire(import.meta.url);
  const file = require.resolve('iced-x86');
  let source: string;
  try {
    source = readFileSync(file, 'utf8');
  } catch {
    return require('iced-x86') as typeof Iced;
  }
  const cacheFile = join(cacheDir(), 'v8', `iced-x86-${icedVersion}-deferred-v8-${process.versions.v8}-${process.arch}.bin`);
  const run = runCommonJsCached(file, source, cacheFile, { WebAssembly: deferredWebAssembly() });
  // After the glue ran, so the cache also holds the functions its start-up compiled.
  if (!run.cacheUsed) run.writeCache();
  return run.exports as typeof Iced;
}

/** The installed iced-x86's version (part of what saved decodes are valid for). */
export const icedVersion = (createRequire(import.meta.url)('iced-x86/package.json') as { version: string }).version;

const iced = loadIced();

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
