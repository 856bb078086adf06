/**
 * A tiny WebAssembly binary encoder: just enough to write the SIMD kernels of simd-kernels.ts
 * in TypeScript (no toolchain, nothing generated at build time, nothing downloaded).
 *
 * A module has one imported memory (the tfjs wasm backend's heap, so kernels read and write
 * tensors in place) and a list of exported functions. Code is written as nested arrays of
 * bytes (`Code`), flattened on output; helpers below return the bytes of one instruction or of
 * an expression (operands first, as the stack machine wants them).
 */

export type Code = number | Code[];
/** value types */
export const T = { i32: 0x7f, i64: 0x7e, f32: 0x7d, f64: 0x7c, v128: 0x7b } as const;
export type T = (typeof T)[keyof typeof T];

export function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n = Math.floor(n / 128);
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

export function sleb(n: number): number[] {
  const out: number[] = [];
  n |= 0;
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

function flatten(c: Code, out: number[] = []): number[] {
  if (typeof c === 'number') out.push(c);
  else for (const x of c) flatten(x, out);
  return out;
}

const str = (s: string) => [...uleb(s.length), ...Array.from(s, (ch) => ch.charCodeAt(0))];
const vec = (items: number[][]) => [...uleb(items.length), ...items.flat()];
const section = (id: number, body: number[]) => [id, ...uleb(body.length), ...body];

/** A function under construction: parameters first, then locals added with `local`. */
export class Fn {
  readonly locals: T[] = [];
  constructor(
    readonly name: string,
    readonly params: T[],
    readonly results: T[] = [],
  ) {}
  /** Adds a local of type `t`, returns its index. */
  local(t: T): number {
    this.locals.push(t);
    return this.params.length + this.locals.length - 1;
  }
  body: Code = [];
}

export interface MemoryImport {
  /** the imported memory is a SharedArrayBuffer one (threaded wasm build) */
  shared: boolean;
  /** maximum pages, required when shared */
  maxPages?: number;
}

/** Encodes a module importing env.memory and exporting every function under its name. */
export function encodeModule(fns: Fn[], mem: MemoryImport): Uint8Array<ArrayBuffer> {
  const types: number[][] = [];
  const typeIndex: number[] = [];
  for (const f of fns) {
    const t = [0x60, ...uleb(f.params.length), ...f.params, ...uleb(f.results.length), ...f.results];
    let i = types.findIndex((x) => x.length === t.length && x.every((b, j) => b === t[j]));
    if (i < 0) i = types.push(t) - 1;
    typeIndex.push(i);
  }
  const limits = mem.shared ? [0x03, ...uleb(1), ...uleb(mem.maxPages ?? 65536)] : [0x00, ...uleb(1)];
  const imports = vec([[...str('env'), ...str('memory'), 0x02, ...limits]]);
  const funcs = vec(typeIndex.map((i) => uleb(i)));
  const exports = vec(fns.map((f, i) => [...str(f.name), 0x00, ...uleb(i)]));
  const bodies = fns.map((f) => {
    const groups: number[][] = [];
    for (const t of f.locals) {
      const last = groups[groups.length - 1];
      if (last && last[1] === t) last[0]++;
      else groups.push([1, t]);
    }
    const body = [...uleb(groups.length), ...groups.flatMap(([n, t]) => [...uleb(n), t]), ...flatten(f.body), 0x0b];
    return [...uleb(body.length), ...body];
  });
  const bytes = [
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vec(types)),
    ...section(2, imports),
    ...section(3, funcs),
    ...section(7, exports),
    ...section(10, vec(bodies)),
  ];
  return new Uint8Array(bytes);
}

// ------------------------------------------------------------------------------------------
// instructions (each returns the bytes of one instruction, operands first where given)
// ------------------------------------------------------------------------------------------

const simd = (op: number, ...imm: number[]) => [0xfd, ...uleb(op), ...imm];
const memarg = (align: number, offset: number) => [...uleb(align), ...uleb(offset)];

export const get = (l: number): Code => [0x20, ...uleb(l)];
export const set = (l: number, ...value: Code[]): Code => [value, 0x21, ...uleb(l)];
export const tee = (l: number, ...value: Code[]): Code => [value, 0x22, ...uleb(l)];
export const i32 = (v: number): Code => [0x41, ...sleb(v)];
export const f32 = (v: number): Code => {
  const b = new Uint8Array(new Float32Array([v]).buffer);
  return [0x43, ...b];
};
export const f64 = (v: number): Code => {
  const b = new Uint8Array(new Float64Array([v]).buffer);
  return [0x44, ...b];
};

const bin = (op: number | number[]) => (a: Code, b: Code): Code => [a, b, op];
const un = (op: number | number[]) => (a: Code): Code => [a, op];

export const I32 = {
  add: bin(0x6a),
  sub: bin(0x6b),
  mul: bin(0x6c),
  divU: bin(0x6e),
  and: bin(0x71),
  shl: bin(0x74),
  shrU: bin(0x76),
  eq: bin(0x46),
  ne: bin(0x47),
  ltS: bin(0x48),
  ltU: bin(0x49),
  gtS: bin(0x4a),
  leS: bin(0x4c),
  geS: bin(0x4e),
  geU: bin(0x4f),
  eqz: un(0x45),
  load: (addr: Code, offset = 0): Code => [addr, 0x28, ...memarg(2, offset)],
};

export const F32 = {
  add: bin(0x92),
  sub: bin(0x93),
  mul: bin(0x94),
  div: bin(0x95),
  fromI32: un(0xb2),
  demote: un(0xb6),
  load: (addr: Code, offset = 0): Code => [addr, 0x2a, ...memarg(2, offset)],
  store: (addr: Code, value: Code, offset = 0): Code => [addr, value, 0x38, ...memarg(2, offset)],
};

export const F64 = {
  add: bin(0xa0),
  sub: bin(0xa1),
  mul: bin(0xa2),
  floor: un(0x9c),
  fromU64: un(0xba),
  promote: un(0xbb),
  load: (addr: Code, offset = 0): Code => [addr, 0x2b, ...memarg(3, offset)],
  store: (addr: Code, value: Code, offset = 0): Code => [addr, value, 0x39, ...memarg(3, offset)],
};

export const I64 = {
  load: (addr: Code, offset = 0): Code => [addr, 0x29, ...memarg(3, offset)],
  store: (addr: Code, value: Code, offset = 0): Code => [addr, value, 0x37, ...memarg(3, offset)],
  truncF64U: un(0xb1),
};

export const V = {
  load: (addr: Code, offset = 0): Code => [addr, simd(0x00, ...memarg(4, offset))],
  /** one f32 from memory, splat to all four lanes */
  loadSplat: (addr: Code, offset = 0): Code => [addr, simd(0x09, ...memarg(2, offset))],
  store: (addr: Code, value: Code, offset = 0): Code => [addr, value, simd(0x0b, ...memarg(4, offset))],
  zero: (): Code => simd(0x0c, ...new Array(16).fill(0)),
  splat: (a: Code): Code => [a, simd(0x13)],
  add: bin(simd(0xe4)),
  sub: bin(simd(0xe5)),
  mul: bin(simd(0xe6)),
  div: bin(simd(0xe7)),
  neg: un(simd(0xe1)),
  lane: (a: Code, i: number): Code => [a, simd(0x1f, i)],
  and: bin(simd(0x4e)),
  /** f64x2 ops, for precise accumulators */
  d: {
    splat: un(simd(0x14)),
    add: bin(simd(0xf0)),
    sub: bin(simd(0xf1)),
    mul: bin(simd(0xf2)),
    floor: un(simd(0x75)),
    lt: bin(simd(0x49)),
    ge: bin(simd(0x4c)),
    /** f32x4 lanes 0,1 -> f64x2 */
    promoteLow: un(simd(0x5f)),
    /** f32x4 lanes 2,3 -> f64x2 */
    promoteHigh: (a: Code): Code => [a, a, simd(0x0d, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7), simd(0x5f)],
    lane: (a: Code, i: number): Code => [a, simd(0x21, i)],
  },
};

// ------------------------------------------------------------------------------------------
// control flow
// ------------------------------------------------------------------------------------------

/** `for (i = from; i < to; i += step) body` with i32 locals; `to` is re-evaluated per test. */
export function forLoop(i: number, from: Code, to: Code, step: Code, ...body: Code[]): Code {
  return [
    set(i, from),
    0x02, 0x40, // block
    I32.geS(get(i), to), 0x0d, 0x00, // br_if 0 (exit when i >= to)
    0x03, 0x40, // loop
    body,
    set(i, I32.add(get(i), step)),
    I32.ltS(get(i), to), 0x0d, 0x00, // br_if 0 (continue)
    0x0b, // end loop
    0x0b, // end block
  ];
}

/** `cond ? a : b` for i32 (or f32, f64) operands; both are evaluated */
export function select(cond: Code, a: Code, b: Code): Code {
  return [a, b, cond, 0x1b];
}

/** `if (cond) then` */
export function when(cond: Code, ...then: Code[]): Code {
  return [cond, 0x04, 0x40, then, 0x0b];
}

/** `if (cond) a else b` */
export function ifElse(cond: Code, a: Code[], b: Code[]): Code {
  return [cond, 0x04, 0x40, a, 0x05, b, 0x0b];
}
