// Minimal declarations for elfy 1.0.0 (CommonJS). 64-bit values are JS numbers there
// (exact only below 2^53), so src/kernel/elf.ts re-reads addresses as bigint.
declare module 'elfy' {
  namespace elfy {
    interface Program {
      type: string | undefined;
      offset: number;
      vaddr: number;
      paddr: number;
      filesz: number;
      memsz: number;
      flags: Record<string, boolean>;
      align: number;
      data: Buffer;
    }
    interface Section {
      name: string;
      type: string | number;
      flags: Record<string, boolean>;
      addr: number;
      off: number;
      size: number;
      link: number;
      info: number;
      addralign: number;
      entsize: number;
      data: Buffer;
    }
    interface File {
      class: string;
      endian: string;
      osabi: string | undefined;
      abiversion: string | undefined;
      type: string | undefined;
      machine: string | undefined;
      version: number;
      entry: number;
      phoff: number;
      shoff: number;
      flags: number;
      ehsize: number;
      phentsize: number;
      phnum: number;
      shentsize: number;
      shnum: number;
      shstrndx: number;
      body: { programs: Program[]; sections: Section[] };
    }
    function parse(buf: Buffer): File;
  }
  export = elfy;
}
