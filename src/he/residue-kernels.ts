import { encodeModule, F64, Fn, forLoop, get, I32, i32, I64, select, set, T, V, type Code } from '../train/kernels/wasm-asm.js';

/**
 * SIMD kernels for seal-scalar-sums.ts, seal-pair-sums.ts and seal-plain-sums.ts: exact integer arithmetic on RNS residues held as
 * float64 (every value an integer below 2^52, so f64x2 adds and multiplies are exact). The
 * module owns its memory; pointers are byte offsets into it and counts are elements (even).
 */

/** narrow4(table, quads, aH, aL, n): per table entry [x0..x3 i32, wh0..3 f64, wl0..3 f64], aH += sum wh*x, aL += sum wl*x */
function narrow4Fn(): Fn {
  const f = new Fn('narrow4', [T.i32, T.i32, T.i32, T.i32, T.i32]);
  const [table, quads, aH, aL, n] = [0, 1, 2, 3, 4];
  const t = f.local(T.i32);
  const i = f.local(T.i32);
  const e = f.local(T.i32);
  const x = [0, 1, 2, 3].map(() => f.local(T.i32));
  const wh = [0, 1, 2, 3].map(() => f.local(T.v128));
  const wl = [0, 1, 2, 3].map(() => f.local(T.v128));
  const v = [0, 1, 2, 3].map(() => f.local(T.v128));
  const sum4 = (w: number[]): Code => V.d.add(V.d.add(V.d.mul(get(w[0]), get(v[0])), V.d.mul(get(w[1]), get(v[1]))), V.d.add(V.d.mul(get(w[2]), get(v[2])), V.d.mul(get(w[3]), get(v[3]))));
  f.body = forLoop(t, i32(0), get(quads), i32(1), [
    set(e, I32.add(get(table), I32.mul(get(t), i32(80)))),
    x.map((xl, k) => set(xl, I32.load(get(e), 4 * k))),
    wh.map((w, k) => set(w, V.d.splat(F64.load(get(e), 16 + 8 * k)))),
    wl.map((w, k) => set(w, V.d.splat(F64.load(get(e), 48 + 8 * k)))),
    forLoop(i, i32(0), I32.shl(get(n), i32(3)), i32(16), [
      v.map((vl, k) => set(vl, V.load(I32.add(get(x[k]), get(i))))),
      V.store(I32.add(get(aH), get(i)), V.d.add(V.load(I32.add(get(aH), get(i))), sum4(wh))),
      V.store(I32.add(get(aL), get(i)), V.d.add(V.load(I32.add(get(aL), get(i))), sum4(wl))),
    ]),
  ]);
  return f;
}

/** wide2(table, pairs, aHH, aM, aLL, n): entries [xh0, xl0, xh1, xl1 i32, wh0, wl0, wh1, wl1 f64] */
function wide2Fn(): Fn {
  const f = new Fn('wide2', [T.i32, T.i32, T.i32, T.i32, T.i32, T.i32]);
  const [table, pairs, aHH, aM, aLL, n] = [0, 1, 2, 3, 4, 5];
  const t = f.local(T.i32);
  const i = f.local(T.i32);
  const e = f.local(T.i32);
  const ptr = [0, 1, 2, 3].map(() => f.local(T.i32));
  const w = [0, 1, 2, 3].map(() => f.local(T.v128));
  const v = [0, 1, 2, 3].map(() => f.local(T.v128));
  const [h0, l0, h1, l1] = v;
  const [wh0, wl0, wh1, wl1] = w;
  const m = (a: number, b: number) => V.d.mul(get(a), get(b));
  const acc = (a: number, add: Code) => V.store(I32.add(get(a), get(i)), V.d.add(V.load(I32.add(get(a), get(i))), add));
  f.body = forLoop(t, i32(0), get(pairs), i32(1), [
    set(e, I32.add(get(table), I32.mul(get(t), i32(48)))),
    ptr.map((p, k) => set(p, I32.load(get(e), 4 * k))),
    w.map((wk, k) => set(wk, V.d.splat(F64.load(get(e), 16 + 8 * k)))),
    forLoop(i, i32(0), I32.shl(get(n), i32(3)), i32(16), [
      v.map((vk, k) => set(vk, V.load(I32.add(get(ptr[k]), get(i))))),
      acc(aHH, V.d.add(m(wh0, h0), m(wh1, h1))),
      acc(aM, V.d.add(V.d.add(m(wh0, l0), m(wl0, h0)), V.d.add(m(wh1, l1), m(wl1, h1)))),
      acc(aLL, V.d.add(m(wl0, l0), m(wl1, l1))),
    ]),
  ]);
  return f;
}

/**
 * pairs(table, terms, accs, n): sum of sign * (a0, a1) x (b0, b1), the three polynomials of a
 * ciphertext product, every residue split in halves. Entries [a0h a0l a1h a1l b0h b0l b1h b1l i32,
 * sign f64] (40 bytes); accs holds nine arrays of n: (hi*hi, cross, lo*lo) for c0 = a0 b0,
 * c1 = a0 b1 + a1 b0 and c2 = a1 b1.
 */
function pairsFn(): Fn {
  const f = new Fn('pairs', [T.i32, T.i32, T.i32, T.i32]);
  const [table, terms, accs, n] = [0, 1, 2, 3];
  const t = f.local(T.i32);
  const i = f.local(T.i32);
  const e = f.local(T.i32);
  const stride = f.local(T.i32);
  const ptr = Array.from({ length: 8 }, () => f.local(T.i32));
  const v = Array.from({ length: 8 }, () => f.local(T.v128));
  const sign = f.local(T.v128);
  const [a0h, a0l, a1h, a1l, b0h, b0l, b1h, b1l] = v;
  const m = (x: number, y: number) => V.d.mul(get(x), get(y));
  const sum = (...xs: Code[]): Code => xs.reduce((acc, x) => V.d.add(acc, x));
  const at = (k: number) => I32.add(I32.add(get(accs), I32.mul(get(stride), i32(k))), get(i));
  const acc = (k: number, add: Code) => V.store(at(k), V.d.add(V.load(at(k)), add));
  f.body = [
    set(stride, I32.shl(get(n), i32(3))),
    forLoop(t, i32(0), get(terms), i32(1), [
      set(e, I32.add(get(table), I32.mul(get(t), i32(40)))),
      ptr.map((p, k) => set(p, I32.load(get(e), 4 * k))),
      set(sign, V.d.splat(F64.load(get(e), 32))),
      forLoop(i, i32(0), get(stride), i32(16), [
        v.map((x, k) => set(x, k < 4 ? V.d.mul(V.load(I32.add(get(ptr[k]), get(i))), get(sign)) : V.load(I32.add(get(ptr[k]), get(i))))),
        acc(0, m(a0h, b0h)),
        acc(1, sum(m(a0h, b0l), m(a0l, b0h))),
        acc(2, m(a0l, b0l)),
        acc(3, sum(m(a0h, b1h), m(a1h, b0h))),
        acc(4, sum(m(a0h, b1l), m(a0l, b1h), m(a1h, b0l), m(a1l, b0h))),
        acc(5, sum(m(a0l, b1l), m(a1l, b0l))),
        acc(6, m(a1h, b1h)),
        acc(7, sum(m(a1h, b1l), m(a1l, b1h))),
        acc(8, m(a1l, b1l)),
      ]),
    ]),
  ];
  return f;
}

/** Element bytes per block of a vector sum: the accumulators of one block stay in L1 while every term streams past. */
const VEC_BLOCK_BYTES = 4096;
const VECTOR_SUM_PARAMS = [T.i32, T.i32, T.i32, T.i32, T.f64, T.f64];

/**
 * The loop nest of the vector sums: for each block of elements, for each term (entries of
 * `entryBytes` at `table`), `inner(e, i)` on byte offset i of the block.
 */
function blockedTerms(f: Fn, table: number, terms: number, n: number, entryBytes: number, inner: (e: number, i: number) => Code[]): Code {
  const blk = f.local(T.i32);
  const end = f.local(T.i32);
  const total = f.local(T.i32);
  const t = f.local(T.i32);
  const e = f.local(T.i32);
  const i = f.local(T.i32);
  return [
    set(total, I32.shl(get(n), i32(3))),
    forLoop(blk, i32(0), get(total), i32(VEC_BLOCK_BYTES), [
      set(end, select(I32.ltS(I32.add(get(blk), i32(VEC_BLOCK_BYTES)), get(total)), I32.add(get(blk), i32(VEC_BLOCK_BYTES)), get(total))),
      forLoop(t, i32(0), get(terms), i32(1), [
        set(e, I32.add(get(table), I32.mul(get(t), i32(entryBytes)))),
        forLoop(i, get(blk), get(end), i32(16), inner(e, i)),
      ]),
    ]),
  ];
}

/**
 * A sum of plaintext-vector x ciphertext products on one limb, f(table, terms, accs, n, unit,
 * inv) (f made by the caller with those parameters and its own locals): per term, the entry at `wAt` of its `entryBytes`-byte table entry points at the
 * plaintext's residues, split here into w = wh*unit + wl, and `perTerm` adds its products to
 * the accumulators (arrays of n at accs + k*8n) through `acc`.
 */
function vectorSumFn(f: Fn, entryBytes: number, wAt: number, perTerm: (e: number, i: number, wh: number, wl: number, acc: (k: number, add: Code) => Code) => Code[]): Fn {
  const [table, terms, accs, n, units, invs] = [0, 1, 2, 3, 4, 5];
  const [unit, inv, w, wh, wl] = [0, 1, 2, 3, 4].map(() => f.local(T.v128));
  const stride = f.local(T.i32);
  const at = (k: number, i: number) => I32.add(I32.add(get(accs), I32.mul(get(stride), i32(k))), get(i));
  f.body = [
    set(stride, I32.shl(get(n), i32(3))),
    set(unit, V.d.splat(get(units))),
    set(inv, V.d.splat(get(invs))),
    blockedTerms(f, table, terms, n, entryBytes, (e, i) => [
      set(w, V.load(I32.add(I32.load(get(e), wAt), get(i)))),
      set(wh, V.d.floor(V.d.mul(get(w), get(inv)))),
      set(wl, V.d.sub(get(w), V.d.mul(get(wh), get(unit)))),
      perTerm(e, i, wh, wl, (k, add) => V.store(at(k, i), V.d.add(V.load(at(k, i)), add))),
    ]),
  ];
  return f;
}

/**
 * vnarrow: a narrow limb. Entries [x0, x1, w i32, pad] (16 bytes): the two polynomials of an
 * input and the plaintext. accs holds four arrays: wh.x0, wl.x0, wh.x1, wl.x1.
 */
function vnarrowFn(): Fn {
  const f = new Fn('vnarrow', VECTOR_SUM_PARAMS);
  const [a, b] = [0, 1].map(() => f.local(T.v128));
  return vectorSumFn(f, 16, 8, (e, i, wh, wl, acc) => [
    set(a, V.load(I32.add(I32.load(get(e), 0), get(i)))),
    set(b, V.load(I32.add(I32.load(get(e), 4), get(i)))),
    acc(0, V.d.mul(get(wh), get(a))),
    acc(1, V.d.mul(get(wl), get(a))),
    acc(2, V.d.mul(get(wh), get(b))),
    acc(3, V.d.mul(get(wl), get(b))),
  ]);
}

/**
 * vwide: a wide limb, whose input residues are split too. Entries [x0h, x0l, x1h, x1l, w i32,
 * pad x3] (32 bytes); accs holds six arrays: (hi*hi, cross, lo*lo) for each polynomial.
 */
function vwideFn(): Fn {
  const f = new Fn('vwide', VECTOR_SUM_PARAMS);
  const [xh, xl] = [0, 1].map(() => f.local(T.v128));
  const poly = (p: number, e: number, i: number, wh: number, wl: number, acc: (k: number, add: Code) => Code): Code[] => [
    set(xh, V.load(I32.add(I32.load(get(e), 8 * p), get(i)))),
    set(xl, V.load(I32.add(I32.load(get(e), 8 * p + 4), get(i)))),
    acc(3 * p, V.d.mul(get(wh), get(xh))),
    acc(3 * p + 1, V.d.add(V.d.mul(get(wh), get(xl)), V.d.mul(get(wl), get(xh)))),
    acc(3 * p + 2, V.d.mul(get(wl), get(xl))),
  ];
  return vectorSumFn(f, 32, 16, (e, i, wh, wl, acc) => [poly(0, e, i, wh, wl, acc), poly(1, e, i, wh, wl, acc)]);
}

/** r mod q for |r| < 2^52: floor(r/q) may be off by one either way, so correct both ways. */
function modq(r: number, q: number, qinv: number, zero: number): Code[] {
  return [
    set(r, V.d.sub(get(r), V.d.mul(V.d.floor(V.d.mul(get(r), get(qinv))), get(q)))),
    set(r, V.d.add(get(r), V.and(V.d.lt(get(r), get(zero)), get(q)))),
    set(r, V.d.sub(get(r), V.and(V.d.ge(get(r), get(q)), get(q)))),
  ];
}

/** mulmod(a, n, factor, q, qinv): a = a * factor mod q (factor 1 reduces) */
function mulmodFn(): Fn {
  const f = new Fn('mulmod', [T.i32, T.i32, T.f64, T.f64, T.f64]);
  const [a, n, factor, qs, qinvs] = [0, 1, 2, 3, 4];
  const i = f.local(T.i32);
  const [fv, q, qinv, zero, r] = [0, 1, 2, 3, 4].map(() => f.local(T.v128));
  f.body = [
    set(fv, V.d.splat(get(factor))),
    set(q, V.d.splat(get(qs))),
    set(qinv, V.d.splat(get(qinvs))),
    set(zero, V.zero()),
    forLoop(i, i32(0), I32.shl(get(n), i32(3)), i32(16), [
      set(r, V.d.mul(V.load(I32.add(get(a), get(i))), get(fv))),
      modq(r, q, qinv, zero),
      V.store(I32.add(get(a), get(i)), get(r)),
    ]),
  ];
  return f;
}

/** addmod(a, b, n, q): a = a + b mod q, both already below q */
function addmodFn(): Fn {
  const f = new Fn('addmod', [T.i32, T.i32, T.i32, T.f64]);
  const [a, b, n, qs] = [0, 1, 2, 3];
  const i = f.local(T.i32);
  const [q, r] = [0, 1].map(() => f.local(T.v128));
  f.body = [
    set(q, V.d.splat(get(qs))),
    forLoop(i, i32(0), I32.shl(get(n), i32(3)), i32(16), [
      set(r, V.d.add(V.load(I32.add(get(a), get(i))), V.load(I32.add(get(b), get(i))))),
      V.store(I32.add(get(a), get(i)), V.d.sub(get(r), V.and(V.d.ge(get(r), get(q)), get(q)))),
    ]),
  ];
  return f;
}

/** split(hi, lo, n, unit, inv): hi = floor(x / unit), lo = x - hi * unit (unit a power of two) */
function splitFn(): Fn {
  const f = new Fn('split', [T.i32, T.i32, T.i32, T.f64, T.f64]);
  const [hi, lo, n, units, invs] = [0, 1, 2, 3, 4];
  const i = f.local(T.i32);
  const [unit, inv, x, h] = [0, 1, 2, 3].map(() => f.local(T.v128));
  f.body = [
    set(unit, V.d.splat(get(units))),
    set(inv, V.d.splat(get(invs))),
    forLoop(i, i32(0), I32.shl(get(n), i32(3)), i32(16), [
      set(x, V.load(I32.add(get(hi), get(i)))),
      set(h, V.d.floor(V.d.mul(get(x), get(inv)))),
      V.store(I32.add(get(lo), get(i)), V.d.sub(get(x), V.d.mul(get(h), get(unit)))),
      V.store(I32.add(get(hi), get(i)), get(h)),
    ]),
  ];
  return f;
}

/** fromU64(p, n): u64 residues to float64, in place */
function fromU64Fn(): Fn {
  const f = new Fn('from_u64', [T.i32, T.i32]);
  const [p, n] = [0, 1];
  const i = f.local(T.i32);
  f.body = forLoop(i, i32(0), I32.shl(get(n), i32(3)), i32(8), [F64.store(I32.add(get(p), get(i)), F64.fromU64(I64.load(I32.add(get(p), get(i)))))]);
  return f;
}

/** toU64(src, dst, n): float64 residues to u64 */
function toU64Fn(): Fn {
  const f = new Fn('to_u64', [T.i32, T.i32, T.i32]);
  const [src, dst, n] = [0, 1, 2];
  const i = f.local(T.i32);
  f.body = forLoop(i, i32(0), I32.shl(get(n), i32(3)), i32(8), [I64.store(I32.add(get(dst), get(i)), I64.truncF64U(F64.load(I32.add(get(src), get(i)))))]);
  return f;
}

export interface ResidueExports {
  narrow4(table: number, quads: number, aH: number, aL: number, n: number): void;
  wide2(table: number, pairs: number, aHH: number, aM: number, aLL: number, n: number): void;
  pairs(table: number, terms: number, accs: number, n: number): void;
  vnarrow(table: number, terms: number, accs: number, n: number, unit: number, inv: number): void;
  vwide(table: number, terms: number, accs: number, n: number, unit: number, inv: number): void;
  mulmod(a: number, n: number, factor: number, q: number, qinv: number): void;
  addmod(a: number, b: number, n: number, q: number): void;
  split(hi: number, lo: number, n: number, unit: number, inv: number): void;
  from_u64(p: number, n: number): void;
  to_u64(src: number, dst: number, n: number): void;
}

let compiled: WebAssembly.Module | null = null;

/** A kernel instance over its own memory, with a bump allocator (freed with the instance). */
export class ResidueKernels {
  readonly memory = new WebAssembly.Memory({ initial: 1, maximum: 65536 });
  readonly k: ResidueExports;
  private top = 16;

  constructor() {
    compiled ??= new WebAssembly.Module(encodeModule([narrow4Fn(), wide2Fn(), pairsFn(), vnarrowFn(), vwideFn(), mulmodFn(), addmodFn(), splitFn(), fromU64Fn(), toU64Fn()], { shared: false }));
    this.k = new WebAssembly.Instance(compiled, { env: { memory: this.memory } }).exports as unknown as ResidueExports;
  }

  /** `bytes` of memory, 16-byte aligned; views taken before a call to alloc may be stale after it */
  alloc(bytes: number): number {
    const at = this.top;
    this.top += Math.ceil(bytes / 16) * 16;
    const have = this.memory.buffer.byteLength;
    // doubling: each grow commits and zeroes fresh pages, so grow rarely
    if (this.top > have) this.memory.grow(Math.ceil(Math.min(Math.max(this.top, 2 * have), 2 ** 32 - 65536) / 65536) - have / 65536);
    return at;
  }

  /** forgets every allocation (the memory is kept for reuse) */
  reset(): void {
    this.top = 16;
  }

  /** frees the allocations above `top` (a value of `used`) */
  releaseTo(top: number): void {
    if (top < this.top) this.top = Math.max(16, top);
  }

  /** bytes allocated so far */
  get used(): number {
    return this.top;
  }

  f64(ptr: number, n: number): Float64Array {
    return new Float64Array(this.memory.buffer, ptr, n);
  }

  i32(ptr: number, n: number): Int32Array {
    return new Int32Array(this.memory.buffer, ptr, n);
  }

  bytes(ptr: number, n: number): Uint8Array {
    return new Uint8Array(this.memory.buffer, ptr, n);
  }
}
