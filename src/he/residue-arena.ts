import { ResidueKernels } from './residue-kernels.js';
import type { CipherText, CkksContext, Evaluator } from './seal.js';

/**
 * Ciphertext residues in the memory of the SIMD kernels (residue-kernels.ts), for the sums
 * computed on residues (seal-scalar-sums.ts, seal-pair-sums.ts). Residues are exact float64
 * integers; ciphertexts come in and go out through SEAL's uncompressed serialization, the only
 * way node-seal exposes them, so each input is copied once and each output once.
 */

/** SEAL 4.1 serialization, uncompressed: the scale field and where the residues start. */
const SCALE_OFFSET = 73;
const DATA_OFFSET = 113;
/** every float64 intermediate stays below this in magnitude (exact integers, with room for one residue) */
export const EXACT = 2 ** 52;
/**
 * Kernel memory for input residues before the terms so far are summed into ciphertexts (a
 * worker thread also holds its SEAL heap; a wide layer's inputs are gigabytes).
 */
export const RESIDUE_BUDGET = 512 * 2 ** 20;
/** residues wider than this need splits too fine to pay: such sums go to SEAL */
export const MAX_KERNEL_BITS = 48;

/** A limb: its prime, and the halves its residues split into (products of halves stay exact). */
export interface Limb {
  q: number;
  qinv: number;
  bits: number;
  half: number;
}

export function limbsAt(ctx: CkksContext, level: number): Limb[] | null {
  const limbs: Limb[] = [];
  for (const big of ctx.levels[level].primes) {
    const q = Number(big);
    const bits = Math.ceil(Math.log2(q));
    if (bits > MAX_KERNEL_BITS) return null;
    limbs.push({ q, qinv: 1 / q, bits, half: Math.ceil(bits / 2) });
  }
  return limbs;
}

/**
 * Limbs up to 32 bits split only the constant (or plaintext) operand; wider ones split the
 * ciphertext residues too, so every product of halves stays below 2^(2 half).
 */
export const NARROW_BITS = 32;
export const isWideLimb = (l: Limb) => l.bits > NARROW_BITS;

/** Terms of a product by a constant or plaintext summed between two reductions: narrow, one half of w times x; wide, two products of halves in the cross sum. */
export function termsBetweenReductions(l: Limb): number {
  const product = isWideLimb(l) ? 2 ** (2 * l.half + 1) : 2 ** (l.bits + l.half);
  return Math.max(1, Math.floor((EXACT - l.q) / product));
}

/** Bytes one ciphertext's residues take in an arena at these limbs (halves where wide). */
export function residueBytes(N: number, limbs: { bits: number }[]): number {
  return 8 * 2 * N * (limbs.length + limbs.filter((l) => l.bits > NARROW_BITS).length);
}

/** An input's residues: [poly][limb] pointers to N values (the hi half where split), lo halves or -1. */
export interface Residues {
  hi: number[][];
  lo: number[][];
}

export class ResidueArena {
  readonly N: number;
  readonly kern: ResidueKernels;
  private tablePtr = 0;
  private tableBytes = 0;
  private ev: Evaluator | null = null;
  /** the bytes `ciphertext` writes each output into before SEAL loads (copies) them: one buffer, not one per output */
  private scratch: Uint8Array | null = null;

  constructor(
    readonly ctx: CkksContext,
    readonly level: number,
    readonly limbs: Limb[],
    /** kernel memory to work in (a backend reuses one across steps); a fresh one when absent */
    kern?: ResidueKernels,
  ) {
    this.N = ctx.params.polyModulusDegree;
    this.kern = kern ?? new ResidueKernels();
  }

  get used(): number {
    return this.kern.used;
  }

  /** Bytes `read` will take for one ciphertext. */
  bytesFor(split: (l: Limb) => boolean): number {
    return 8 * 2 * this.N * (this.limbs.length + this.limbs.filter(split).length);
  }

  /** x's residues at the arena's level (limbs above it dropped: CKKS mod switching in NTT form), halves where `split`. */
  read(x: CipherText, split: (l: Limb) => boolean): Residues {
    if (x.coeffModulusSize < this.level + 1) throw new Error(`internal: a level-${x.coeffModulusSize - 1} ciphertext in a sum at level ${this.level}`);
    const { N, kern } = this;
    const bytes = x.saveArray(this.ctx.seal.ComprModeType.none);
    const Lx = x.coeffModulusSize;
    const L = this.limbs.length;
    const hi: number[][] = [];
    const lo: number[][] = [];
    for (let p = 0; p < 2; p++) {
      const start = DATA_OFFSET + 8 * p * Lx * N;
      const at = kern.alloc(8 * L * N);
      kern.bytes(at, 8 * L * N).set(bytes.subarray(start, start + 8 * L * N));
      kern.k.from_u64(at, L * N);
      hi.push(this.limbs.map((_, j) => at + 8 * j * N));
      lo.push(
        this.limbs.map((l, j) => {
          if (!split(l)) return -1;
          const low = kern.alloc(8 * N);
          kern.k.split(hi[p][j], low, N, 2 ** l.half, 2 ** -l.half);
          return low;
        }),
      );
    }
    return { hi, lo };
  }

  /** Forgets every residue read so far. */
  reset(): void {
    this.kern.reset();
    this.tableBytes = 0;
  }

  alloc(bytes: number): number {
    return this.kern.alloc(bytes);
  }

  /** Frees every allocation made since `mark` (a value of `used` taken before them). */
  release(mark: number): void {
    if (this.tablePtr >= mark) this.tableBytes = 0;
    this.kern.releaseTo(mark);
  }

  /** A term table of at least `bytes`, reused while big enough. */
  table(bytes: number): number {
    if (bytes > this.tableBytes) {
      this.tablePtr = this.kern.alloc(bytes);
      this.tableBytes = bytes;
    }
    return this.tablePtr;
  }

  zero(...accs: number[]): void {
    for (const a of accs) this.kern.f64(a, this.N).fill(0);
  }

  reduce(accs: number[], l: Limb): void {
    for (const a of accs) this.kern.k.mulmod(a, this.N, 1, l.q, l.qinv);
  }

  /** a = a * 2^bits mod q, in steps small enough to stay exact */
  shift(a: number, bits: number, l: Limb): void {
    const step = Math.floor(Math.log2(EXACT / l.q));
    for (let k = bits; k > 0; k -= step) this.kern.k.mulmod(a, this.N, 2 ** Math.min(step, k), l.q, l.qinv);
  }

  /**
   * Zeroes `accs`, then runs `call(first, count)` over `total` terms in calls of at most
   * `perCall`, reducing the accumulators between calls so they stay exact.
   */
  batched(accs: number[], l: Limb, total: number, perCall: number, call: (first: number, count: number) => void): void {
    this.zero(...accs);
    for (let r = 0; r < total; r += perCall) {
      if (r > 0) this.reduce(accs, l);
      call(r, Math.min(perCall, total - r));
    }
  }

  /** (wh.x, wl.x) of a narrow limb -> wh.x*2^half + wl.x mod q, in h */
  combineNarrow(h: number, lo: number, l: Limb): number {
    this.reduce([h, lo], l);
    this.shift(h, l.half, l);
    this.kern.k.addmod(h, lo, this.N, l.q);
    return h;
  }

  /** (hh, cross, ll) of products of halves -> hh*2^(2 half) + cross*2^half + ll mod q, in hh */
  combineHalves([hh, m, ll]: number[], l: Limb): number {
    this.reduce([hh, m, ll], l);
    this.shift(hh, l.half, l);
    this.kern.k.addmod(hh, m, this.N, l.q);
    this.shift(hh, l.half, l);
    this.kern.k.addmod(hh, ll, this.N, l.q);
    return hh;
  }

  /** acc += c (a partial sum of the same output: same level and scale), freeing c */
  addInto(acc: CipherText, c: CipherText): void {
    acc.setScale(c.scale);
    this.ev ??= this.ctx.seal.Evaluator(this.ctx.context);
    this.ev.add(acc, c, acc);
    c.delete();
  }

  /** Frees the evaluator `addInto` made (the kernel memory goes with the arena). */
  close(): void {
    this.ev?.delete();
    this.ev = null;
  }

  /** The ciphertext whose residues are at `data` (size polys, limbs of the level), with `scale`. */
  ciphertext(template: Uint8Array, data: number, size: number, scale: number): CipherText {
    if (this.scratch?.length !== template.length) this.scratch = new Uint8Array(template.length);
    const bytes = this.scratch;
    // the residues fill everything after the header (checkLayout)
    bytes.set(template.subarray(0, DATA_OFFSET));
    new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).setFloat64(SCALE_OFFSET, scale, true);
    bytes.set(this.kern.bytes(data, 8 * size * this.limbs.length * this.N), DATA_OFFSET);
    const c = this.ctx.seal.CipherText();
    c.loadArray(this.ctx.context, bytes);
    return c;
  }
}

/** Checks the serialization layout this module writes against a real ciphertext's bytes. */
export function checkLayout(template: Uint8Array, c: CipherText, N: number): void {
  const view = new DataView(template.buffer, template.byteOffset, template.byteLength);
  const expected = DATA_OFFSET + 8 * c.size * c.coeffModulusSize * N;
  if (template.length !== expected || view.getFloat64(SCALE_OFFSET, true) !== c.scale) {
    throw new Error(`internal: SEAL's ciphertext serialization is not the layout residue-arena.ts expects (${template.length} bytes, expected ${expected})`);
  }
}
