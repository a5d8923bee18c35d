/*
 * A WebAssembly function body written op by op, and the one-function module
 * around it. Only what translated blocks use: i32/i64/f64 locals, structured
 * control flow with named labels, loads and stores into one imported shared
 * memory.
 */

export enum Op {
  Unreachable = 0x00, Block = 0x02, Loop = 0x03, If = 0x04, Else = 0x05, End = 0x0b, Br = 0x0c, BrIf = 0x0d, BrTable = 0x0e, Return = 0x0f, Call = 0x10, CallIndirect = 0x11, Select = 0x1b,
  LocalGet = 0x20, LocalSet = 0x21, LocalTee = 0x22,
  I32Load = 0x28, I64Load = 0x29, I64Load8U = 0x31, I64Load16U = 0x33, I64Load32U = 0x35,
  I32Store = 0x36, I64Store = 0x37, I64Store8 = 0x3c, I64Store16 = 0x3d, I64Store32 = 0x3e,
  I32Const = 0x41, I64Const = 0x42, F64Const = 0x44,
  I32Eqz = 0x45, I32Eq = 0x46, I32Ne = 0x47, I32LtS = 0x48, I32LtU = 0x49, I32GtS = 0x4a, I32GtU = 0x4b, I32GeS = 0x4e,
  I64Eqz = 0x50, I64Eq = 0x51, I64Ne = 0x52, I64LtS = 0x53, I64LtU = 0x54, I64GtS = 0x55, I64GtU = 0x56, I64LeS = 0x57, I64LeU = 0x58, I64GeS = 0x59, I64GeU = 0x5a,
  F64Lt = 0x63, F64Gt = 0x64, F64Le = 0x65, F64Ge = 0x66,
  I32Clz = 0x67, I32Ctz = 0x68, I32Popcnt = 0x69, I32Add = 0x6a, I32Sub = 0x6b, I32Mul = 0x6c, I32And = 0x71, I32Or = 0x72, I32Xor = 0x73, I32Shl = 0x74, I32ShrS = 0x75, I32ShrU = 0x76,
  I32Rotl = 0x77, I32Rotr = 0x78,
  I64Clz = 0x79, I64Ctz = 0x7a, I64Popcnt = 0x7b, I64Add = 0x7c, I64Sub = 0x7d, I64Mul = 0x7e, I64And = 0x83, I64Or = 0x84, I64Xor = 0x85, I64Shl = 0x86, I64ShrS = 0x87, I64ShrU = 0x88,
  I64Rotl = 0x89, I64Rotr = 0x8a,
  F64Add = 0xa0, F64Sub = 0xa1,
  I32WrapI64 = 0xa7, I64ExtendI32S = 0xac, I64ExtendI32U = 0xad, F64ConvertI32U = 0xb8, F64Load = 0x2b, F64Store = 0x39, I32Store8 = 0x3a,
  I64Extend8S = 0xc2, I64Extend16S = 0xc3, I64Extend32S = 0xc4,
}

export enum ValType { I32 = 0x7f, I64 = 0x7e, F64 = 0x7c }
const BLOCK_VOID = 0x40;

function uleb(out: number[], n: number): void {
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
}

function sleb32(out: number[], n: number): void {
  n |= 0;
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return;
    }
    out.push(b | 0x80);
  }
}

/** A signed LEB128 of the 64-bit value hi:lo (code generation time only, never per instruction). */
function sleb64(out: number[], lo: number, hi: number): void {
  if ((hi | 0) === (lo | 0) >> 31) {
    sleb32(out, lo);
    return;
  }
  let n = BigInt.asIntN(64, (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0));
  for (;;) {
    const b = Number(n & 0x7fn);
    n >>= 7n;
    if ((n === 0n && (b & 0x40) === 0) || (n === -1n && (b & 0x40) !== 0)) {
      out.push(b);
      return;
    }
    out.push(b | 0x80);
  }
}

/** One function's body under construction. Labels are names; `br` finds their depth. */
export class FunctionBody {
  readonly code: number[] = [];
  /** Code that goes before `code` (a prologue known only once the body is written). */
  prefix: readonly number[] = [];
  private readonly localTypes: ValType[] = [];
  private readonly labels: string[] = [];

  constructor(private readonly params: readonly ValType[]) {}

  /** A new local of type `t`: its index. */
  local(t: ValType): number {
    this.localTypes.push(t);
    return this.params.length + this.localTypes.length - 1;
  }

  op(...ops: number[]): this {
    for (const o of ops) this.code.push(o);
    return this;
  }

  get(l: number): this { this.code.push(Op.LocalGet); uleb(this.code, l); return this; }
  set(l: number): this { this.code.push(Op.LocalSet); uleb(this.code, l); return this; }
  tee(l: number): this { this.code.push(Op.LocalTee); uleb(this.code, l); return this; }
  i32(v: number): this { this.code.push(Op.I32Const); sleb32(this.code, v); return this; }
  i64(lo: number, hi = lo < 0 ? -1 : 0): this { this.code.push(Op.I64Const); sleb64(this.code, lo, hi); return this; }
  f64(v: number): this {
    this.code.push(Op.F64Const);
    const b = new Uint8Array(new Float64Array([v]).buffer);
    for (const x of b) this.code.push(x);
    return this;
  }

  /** A load or store with a constant offset (the address operand is on the stack). */
  mem(op: Op, offset: number): this {
    this.code.push(op);
    uleb(this.code, 0); // alignment hint 1: guest accesses need not be aligned
    uleb(this.code, offset);
    return this;
  }

  /** Open a block, loop or if; `label` names it for br. */
  open(kind: Op.Block | Op.Loop | Op.If, label: string): this {
    this.code.push(kind, BLOCK_VOID);
    this.labels.push(label);
    return this;
  }

  else(): this { this.code.push(Op.Else); return this; }

  close(): this {
    this.code.push(Op.End);
    this.labels.pop();
    return this;
  }

  private depth(label: string): number {
    const at = this.labels.lastIndexOf(label);
    if (at < 0) throw new Error(`no open label ${label}`);
    return this.labels.length - 1 - at;
  }

  br(label: string): this { this.code.push(Op.Br); uleb(this.code, this.depth(label)); return this; }
  /** br_table: to labels[i] for the i32 on the stack, to `otherwise` past their end. */
  brTable(labels: readonly string[], otherwise: string): this {
    this.code.push(Op.BrTable);
    uleb(this.code, labels.length);
    for (const l of labels) uleb(this.code, this.depth(l));
    uleb(this.code, this.depth(otherwise));
    return this;
  }
  brIf(label: string): this { this.code.push(Op.BrIf); uleb(this.code, this.depth(label)); return this; }

  /** The body as the code section wants it: local declarations, prefix, code, end. */
  encode(): Uint8Array {
    const out: number[] = [];
    const groups: Array<[number, ValType]> = [];
    for (const t of this.localTypes) {
      const last = groups[groups.length - 1];
      if (last !== undefined && last[1] === t) last[0]++;
      else groups.push([1, t]);
    }
    uleb(out, groups.length);
    for (const [count, t] of groups) {
      uleb(out, count);
      out.push(t);
    }
    return concat([out, this.prefix, this.code, [Op.End]]);
  }
}

/** The parts one after another. */
function concat(parts: readonly ArrayLike<number>[]): Uint8Array<ArrayBuffer> {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function section(out: ArrayLike<number>[], id: number, body: ArrayLike<number>): void {
  const head = [id];
  uleb(head, body.length);
  out.push(head, body);
}

function name(out: number[], s: string): void {
  uleb(out, s.length);
  for (let i = 0; i < s.length; i++) out.push(s.charCodeAt(i));
}

const HEADER = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
const FUNC_TYPE = 0x60, FUNCREF = 0x70;

/** A function type: params -> results. */
function funcType(out: number[], params: readonly ValType[], results: readonly ValType[]): void {
  out.push(FUNC_TYPE);
  uleb(out, params.length);
  out.push(...params);
  uleb(out, results.length);
  out.push(...results);
}

function codeSection(out: ArrayLike<number>[], ...bodies: FunctionBody[]): void {
  const parts: ArrayLike<number>[] = [];
  const count: number[] = [];
  uleb(count, bodies.length);
  parts.push(count);
  for (const body of bodies) {
    const code = body.encode();
    const size: number[] = [];
    uleb(size, code.length);
    parts.push(size, code);
  }
  section(out, 10, concat(parts));
}

function importMemory(out: number[]): void {
  name(out, 'm');
  name(out, 'mem');
  out.push(0x02, 0x03); // memory, limits with a maximum, shared
  uleb(out, 1);
  uleb(out, 65536);
}

/** The function type of a compiled block (and of a region's entries): () -> i32. */
const BLOCK_PARAMS: readonly ValType[] = [];
/** The function types every module here declares, in this order: () -> i32, () -> (), i32 -> i32. */
const TYPE_BLOCK = 0, TYPE_VOID = 1, TYPE_REGION = 2;

function typeSection(out: ArrayLike<number>[]): void {
  const types: number[] = [3];
  funcType(types, BLOCK_PARAMS, [ValType.I32]);
  funcType(types, [], []);
  funcType(types, [ValType.I32], [ValType.I32]);
  section(out, 1, types);
}

/**
 * The imports of a block's or a region's module: the shared memory `m.mem`
 * (a WasmArena's) and the dispatcher module's `m.settle` (() -> (), function
 * 0), see wasm-block.ts.
 */
function blockImports(out: ArrayLike<number>[]): void {
  const imports: number[] = [2];
  importMemory(imports);
  name(imports, 'm');
  name(imports, 'settle');
  imports.push(0x00, TYPE_VOID);
  section(out, 2, imports);
}

/** Index of a module's first own function (after blockImports' one). */
const FIRST_OWN = 1;

function exportFunctions(out: ArrayLike<number>[], names: readonly string[], first: number): void {
  const exports: number[] = [];
  uleb(exports, names.length);
  names.forEach((n, j) => {
    name(exports, n);
    exports.push(0x00);
    uleb(exports, first + j);
  });
  section(out, 7, exports);
}

/** A module exporting `f`, a compiled block (() -> i32), over blockImports. */
export function blockModuleBytes(body: FunctionBody): Uint8Array<ArrayBuffer> {
  const out: ArrayLike<number>[] = [HEADER];
  typeSection(out);
  blockImports(out);
  section(out, 3, [1, TYPE_BLOCK]);
  exportFunctions(out, ['f'], FIRST_OWN);
  codeSection(out, body);
  return concat(out);
}

/**
 * A module for a region of blocks (wasm-block.ts) over blockImports: the
 * region's function (i32 -> i32: which member to start at), and per member
 * j an export `e<j>` (() -> i32, a compiled block's type) that starts it
 * there.
 */
export function regionModuleBytes(region: FunctionBody, members: number): Uint8Array<ArrayBuffer> {
  const out: ArrayLike<number>[] = [HEADER];
  typeSection(out);
  blockImports(out);
  const functions: number[] = [];
  uleb(functions, members + 1);
  functions.push(TYPE_REGION);
  for (let j = 0; j < members; j++) functions.push(TYPE_BLOCK);
  section(out, 3, functions);
  exportFunctions(out, Array.from({ length: members }, (_, j) => `e${j}`), FIRST_OWN + 1);
  const wrappers: FunctionBody[] = [];
  for (let j = 0; j < members; j++) wrappers.push(new FunctionBody([]).i32(j).op(Op.Call, FIRST_OWN));
  codeSection(out, region, ...wrappers);
  return concat(out);
}

/**
 * The dispatcher's module over the imported shared memory `m.mem` and the
 * table `m.table` of compiled blocks: `run` (i32 -> i32, function 0), which
 * calls blocks with call_indirect of type () -> i32 (type 0), and `settle`
 * (() -> (), function 1), which blocks import.
 */
export function dispatcherModuleBytes(run: FunctionBody, settle: FunctionBody): Uint8Array<ArrayBuffer> {
  const out: ArrayLike<number>[] = [HEADER];
  typeSection(out);
  const imports: number[] = [2];
  importMemory(imports);
  name(imports, 'm');
  name(imports, 'table');
  imports.push(0x01, FUNCREF, 0x00); // table of funcref, minimum only
  uleb(imports, 1);
  section(out, 2, imports);
  section(out, 3, [2, TYPE_REGION, TYPE_VOID]);
  exportFunctions(out, ['run', 'settle'], 0);
  codeSection(out, run, settle);
  return concat(out);
}
