/*
 * A WebAssembly namespace whose Module and Instance compile nothing until the
 * module is first used, for the decoder's glue code (src/cpu/iced.ts). That
 * glue compiles and instantiates iced's 780 KB of WebAssembly as it loads, a
 * twentieth of a verdict at extract_kernel, while a boot whose instructions
 * all come from saved decodes (src/cli/decoded-store.ts) never calls it. The
 * deferred Instance's exports object starts empty, above a Proxy: the first
 * read of any export reaches the Proxy, which compiles and instantiates the
 * module and copies the real exports onto the object, so every later read
 * finds them there and calls go straight to WebAssembly. Everything else is
 * the real namespace.
 */

/** A Module constructed with bytes: compiled when an instance is first used. */
class DeferredModule {
  constructor(readonly bytes: Uint8Array<ArrayBuffer>) {}
}

export function deferredWebAssembly(): typeof WebAssembly {
  const real = WebAssembly;
  function Instance(this: unknown, module: WebAssembly.Module | DeferredModule, imports?: WebAssembly.Imports): { exports: WebAssembly.Exports } {
    if (!(module instanceof DeferredModule)) return new real.Instance(module, imports);
    const instantiate = new Proxy({}, {
      get(_target, name, receiver: Record<string | symbol, unknown>) {
        const actual = new real.Instance(new real.Module(module.bytes), imports).exports;
        // Own properties from now on: the Proxy below them is never reached again.
        for (const [key, value] of Object.entries(actual)) Object.defineProperty(receiver, key, { value, writable: true, enumerable: true, configurable: true });
        return actual[name as string];
      },
    });
    return { exports: Object.create(instantiate) as WebAssembly.Exports };
  }
  return Object.assign(Object.create(real) as typeof WebAssembly, { Module: DeferredModule, Instance });
}
