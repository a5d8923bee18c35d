/*
 * A WebAssembly namespace whose Module and Instance compile nothing until the
 * module is first used, for the decoder's glue code (src/cpu/iced.ts). That
 * glue compiles and instantiates iced's 780 KB of WebAssembly as it loads, a
 * twentieth of a verdict at extract_kernel, while a boot whose instructions
 * all come from saved decodes (src/cli/decoded-store.ts) never calls it. The
 * deferred Instance's exports start as stand-ins named after the module's
 * real exports: calling or reading any of them compiles and instantiates the
 * module, and then every export is replaced by the real one, so later calls
 * go straight to WebAssembly. Everything else is the real namespace.
 */

/** A Module constructed with bytes: compiled when an instance is first used. */
class DeferredModule {
  constructor(readonly bytes: Uint8Array<ArrayBuffer>) {}
}

/** Export names and kinds (0 function, else table, memory or global) read from a module's export section. */
function exportsOf(bytes: Uint8Array): Array<{ name: string; kind: number }> {
  let at = 8; // magic and version
  const leb = (): number => {
    let value = 0, shift = 0, byte = 0;
    do {
      byte = bytes[at++];
      value += (byte & 0x7f) * 2 ** shift;
      shift += 7;
    } while (byte & 0x80);
    return value;
  };
  while (at < bytes.length) {
    const id = bytes[at++];
    const size = leb();
    if (id !== 7) {
      at += size;
      continue;
    }
    const out: Array<{ name: string; kind: number }> = [];
    for (let n = leb(); n > 0; n--) {
      const length = leb();
      const name = Buffer.from(bytes.buffer, bytes.byteOffset + at, length).toString('utf8');
      at += length;
      const kind = bytes[at++];
      leb(); // index
      out.push({ name, kind });
    }
    return out;
  }
  return [];
}

export function deferredWebAssembly(): typeof WebAssembly {
  const real = WebAssembly;
  function Instance(this: unknown, module: WebAssembly.Module | DeferredModule, imports?: WebAssembly.Imports): { exports: WebAssembly.Exports } {
    if (!(module instanceof DeferredModule)) return new real.Instance(module, imports);
    const exports: Record<string, unknown> = {};
    let instance: WebAssembly.Exports | null = null;
    const instantiate = (): WebAssembly.Exports => {
      if (instance === null) {
        instance = new real.Instance(new real.Module(module.bytes), imports).exports;
        for (const [name, value] of Object.entries(instance)) {
          Object.defineProperty(exports, name, { value, writable: true, enumerable: true, configurable: true });
        }
      }
      return instance;
    };
    for (const { name, kind } of exportsOf(module.bytes)) {
      if (kind === 0) {
        exports[name] = (...args: unknown[]): unknown => (instantiate()[name] as (...a: unknown[]) => unknown)(...args);
      } else {
        Object.defineProperty(exports, name, { get: () => instantiate()[name], enumerable: true, configurable: true });
      }
    }
    return { exports: exports as WebAssembly.Exports };
  }
  return Object.assign(Object.create(real) as typeof WebAssembly, { Module: DeferredModule, Instance });
}
