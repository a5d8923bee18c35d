import { describe, expect, it } from 'vitest';
import { deferredWebAssembly } from '../../src/cpu/deferred-wasm.js';
import { decodeInsn } from '../../src/cpu/decode.js';

/*
 * The WebAssembly namespace iced's glue code loads with
 * (src/cpu/deferred-wasm.ts): constructing a module and an instance
 * compiles nothing; the first use of any export does, and from then on the
 * exports are the real ones, own properties of the exports object.
 */

/** A module exporting add(i32, i32) -> i32 and a one-page memory; `body` is add's code. */
function module(body: number[]): Uint8Array<ArrayBuffer> {
  const code = [0x00, ...body, 0x0b]; // no locals, the body, end
  return Uint8Array.from([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
    0x01, 0x07, 0x01, 0x60, 0x02, 0x7f, 0x7f, 0x01, 0x7f, // types: (i32, i32) -> i32
    0x03, 0x02, 0x01, 0x00, // functions: one of type 0
    0x05, 0x03, 0x01, 0x00, 0x01, // memory: one page
    0x07, 0x10, 0x02, 0x03, 0x61, 0x64, 0x64, 0x00, 0x00, 0x06, 0x6d, 0x65, 0x6d, 0x6f, 0x72, 0x79, 0x02, 0x00, // exports add, memory
    0x0a, code.length + 2, 0x01, code.length, ...code, // code
  ]);
}
const ADD = [0x20, 0x00, 0x20, 0x01, 0x6a]; // local.get 0, local.get 1, i32.add
const INVALID = [0x20, 0x00, 0x20, 0x01, 0xff]; // not an opcode: compiling fails

describe('deferred WebAssembly', () => {
  it('compiles nothing until an export is used', () => {
    const wasm = deferredWebAssembly();
    const instance = new wasm.Instance(new wasm.Module(module(INVALID)), {});
    const exports = instance.exports as { add: (a: number, b: number) => number };
    expect(() => new WebAssembly.Module(module(INVALID))).toThrow(WebAssembly.CompileError);
    expect(() => exports.add(1, 2)).toThrow(WebAssembly.CompileError); // compiled only now
  });

  it('gives the real exports once used, by call or by read, from one instance', () => {
    for (const first of ['call', 'read'] as const) {
      const wasm = deferredWebAssembly();
      const exports = new wasm.Instance(new wasm.Module(module(ADD)), {}).exports as { add: (a: number, b: number) => number; memory: WebAssembly.Memory };
      if (first === 'call') expect(exports.add(40, 2)).toBe(42);
      else expect(exports.memory.buffer.byteLength).toBe(65536);
      expect(Object.keys(exports).sort()).toEqual(['add', 'memory']);
      expect(Object.getOwnPropertyDescriptor(exports, 'memory')!.value).toBeInstanceOf(WebAssembly.Memory);
      expect(Object.getOwnPropertyDescriptor(exports, 'add')!.value.name).toBe('0'); // WebAssembly's own exported function (named by its index)
      expect(exports.add(-1, 1)).toBe(0);
      const memory = exports.memory;
      new Uint8Array(memory.buffer)[7] = 0x5a;
      expect(exports.add(1, 1)).toBe(2);
      expect(exports.memory).toBe(memory); // one instance: instantiated once
      expect(new Uint8Array(exports.memory.buffer)[7]).toBe(0x5a);
    }
  });

  it('passes other uses through to the real namespace', () => {
    const wasm = deferredWebAssembly();
    const real = new WebAssembly.Module(module(ADD));
    const instance = new wasm.Instance(real, {});
    expect((instance.exports.add as (a: number, b: number) => number)(2, 3)).toBe(5);
    expect(wasm.Memory).toBe(WebAssembly.Memory);
    expect(wasm.validate(module(ADD))).toBe(true);
  });

  it('serves iced, which the decoder loads through it', () => {
    expect(decodeInsn(Uint8Array.of(0x48, 0x01, 0xc8), 0x1000, 0, false, 64)!.len).toBe(3); // add rax, rcx
  });
});
