import { ResidueKernels } from './residue-kernels.js';
import type { ScalarSums } from './scalar-sums.js';
import type { CipherText, CkksContext } from './seal.js';

/**
 * Batch packing's linear layers computed on the residues themselves. A scalar constant encodes
 * to the constant polynomial, whose NTT form holds the same residue W mod q in every
 * coefficient, so SEAL's multiply_plain by it is "multiply every residue of limb q by W mod q".
 * A sum of such products is therefore, limb by limb, a small integer matrix product
 * sum_i (W_i mod q) * x_i mod q, which this module computes exactly in float64 (every operand
 * is split so that products and their running sums stay below 2^52) and reduces once per
 * batch of terms instead of once per product. The result is bit for bit what the
 * multiply_plain + add sequence gives (the tests compare the bytes); it runs several times
 * faster because wasm SEAL pays an emulated 128-bit Barrett reduction on every product.
 *
 * Ciphertexts go in and out through SEAL's uncompressed serialization (the only way node-seal
 * exposes their residues): each input is read once, each output written once, so the copies
 * cost O(ciphertexts), not O(terms).
 */

/** SEAL 4.1 serialization, uncompressed: the scale field and where the residues start. */
const SCALE_OFFSET = 73;
const DATA_OFFSET = 113;
/** every float64 intermediate stays below this (exact integers, with room for one residue) */
const EXACT = 2 ** 52;
/**
 * Kernel memory for input residues before the terms so far are summed into ciphertexts (a
 * worker thread also holds its SEAL heap; a wide layer's inputs are gigabytes).
 */
const RESIDUE_BUDGET = 512 * 2 ** 20;
/** residues wider than this need splits too fine to pay: such terms go to SEAL */
export const MAX_KERNEL_BITS = 48;

/** A limb: its prime and how its products are split to stay exact. */
interface Limb {
  q: number;
  qinv: number;
  /** wide limbs split both x and W into hi/lo halves of `half` bits */
  wide: boolean;
  half: number;
  /** terms summed between two reductions */
  batch: number;
}

function limbOf(qBig: bigint): Limb | null {
  const q = Number(qBig);
  const bits = Math.ceil(Math.log2(q));
  if (bits > MAX_KERNEL_BITS) return null;
  const wide = bits > 32;
  const half = Math.ceil(bits / 2);
  // narrow: W = wh*2^half + wl against an unsplit x, each product below 2^(bits+half);
  // wide: x and W both split, the middle accumulator holds two products of 2^(2*half)
  const product = wide ? 2 ** (2 * half + 1) : 2 ** (bits + half);
  const batch = Math.floor((EXACT - q) / product);
  return { q, qinv: 1 / q, wide, half, batch };
}

/** An input's residues in kernel memory: limbs 0..level of each polynomial, as exact float64. */
interface Residues {
  /** [poly][limb] -> pointer to N values (the hi half for wide limbs) */
  hi: number[][];
  /** [poly][limb] -> pointer to the lo half (wide limbs only, else -1) */
  lo: number[][];
}

interface Term {
  input: number;
  /** W mod q per limb */
  w: Float64Array;
}

interface Output {
  scale: number;
  terms: Term[];
}

export class SealScalarSums implements ScalarSums<CipherText> {
  private readonly N: number;
  private readonly limbs: Limb[];
  private readonly kern = new ResidueKernels();
  /** sums of the terms before a flush, as ciphertexts */
  private readonly partial = new Map<number, CipherText>();
  private readonly inputs: Residues[] = [];
  private readonly inputIndex = new Map<string, number>();
  private readonly outputs = new Map<number, Output>();
  /** outputs that have a term (a zero-weight term after the first adds nothing) */
  private readonly started = new Set<number>();

  constructor(
    private readonly ctx: CkksContext,
    private readonly level: number,
    /** a serialized size-2 ciphertext at `level`: the outputs' header and parms id */
    private readonly template: Uint8Array,
    private readonly fallback: () => ScalarSums<CipherText>,
    private readonly tolerance: number,
    private readonly budget = RESIDUE_BUDGET,
  ) {
    this.N = ctx.params.polyModulusDegree;
    const primes = ctx.levels[level].primes;
    this.limbs = primes.map((q) => limbOf(q)!);
  }

  /** Whether every limb of `level` fits the kernel (else the caller uses SEAL's products). */
  static supports(ctx: CkksContext, level: number): boolean {
    return ctx.levels[level].primes.every((q) => limbOf(q) !== null);
  }

  private sealSums: ScalarSums<CipherText> | null = null;

  add(o: number, x: CipherText, value: number, ptScale: number, key: string): void {
    const W = Math.round(value * ptScale);
    if (W === 0 && this.started.has(o)) return;
    this.started.add(o);
    if (Math.log2(Math.abs(W)) + 1 >= this.ctx.levels[this.level].modulusBits) {
      throw new Error(`internal: constant ${value} at scale 2^${Math.log2(ptScale).toFixed(1)} does not fit a plaintext at level ${this.level}`);
    }
    if (x.size !== 2 || W === 0 || !Number.isFinite(W)) {
      // a size-3 operand or an all-zero constant (SEAL's own rules apply): SEAL computes it
      this.sealSums ??= this.fallback();
      this.sealSums.add(o, x, value, ptScale, key);
      return;
    }
    const input = this.residuesOf(x, key);
    const scale = x.scale * ptScale;
    let out = this.outputs.get(o);
    if (!out) this.outputs.set(o, (out = { scale, terms: [] }));
    else if (Math.abs(out.scale - scale) > this.tolerance * Math.max(out.scale, scale)) {
      throw new Error(`internal: summing products with scales 2^${Math.log2(out.scale).toFixed(3)} and 2^${Math.log2(scale).toFixed(3)}`);
    }
    out.terms.push({ input, w: this.residuesOfConstant(W) });
  }

  private residuesOfConstant(W: number): Float64Array {
    const w = new Float64Array(this.limbs.length);
    if (Math.abs(W) < 2 ** 53) {
      this.limbs.forEach((l, j) => (w[j] = ((W % l.q) + l.q) % l.q));
    } else {
      const big = BigInt(W);
      this.limbs.forEach((l, j) => {
        const q = BigInt(l.q);
        w[j] = Number(((big % q) + q) % q);
      });
    }
    return w;
  }

  /** Reads x's residues once (limbs above `level` are dropped: CKKS mod switching in NTT form). */
  private residuesOf(x: CipherText, key: string): number {
    const known = this.inputIndex.get(key);
    if (known !== undefined) return known;
    if (x.coeffModulusSize < this.level + 1) throw new Error(`internal: a level-${x.coeffModulusSize - 1} ciphertext in a sum at level ${this.level}`);
    const { N } = this;
    const need = 8 * 2 * N * (this.limbs.length + this.limbs.filter((l) => l.wide).length);
    if (this.outputs.size && this.kern.used + need > this.budget) this.flush();
    const kern = this.kern;
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
          if (!l.wide) return -1;
          const low = kern.alloc(8 * N);
          kern.k.split(hi[p][j], low, N, 2 ** l.half, 2 ** -l.half);
          return low;
        }),
      );
    }
    this.inputs.push({ hi, lo });
    this.inputIndex.set(key, this.inputs.length - 1);
    return this.inputs.length - 1;
  }

  finish(): Map<number, CipherText> {
    this.flush();
    const result = this.sealSums ? this.sealSums.finish() : new Map<number, CipherText>();
    for (const [o, c] of this.partial) this.addTo(result, o, c);
    this.partial.clear();
    this.ev?.delete();
    this.ev = null;
    return result;
  }

  /** Adds `c` into result[o] (taking ownership). */
  private addTo(result: Map<number, CipherText>, o: number, c: CipherText): void {
    const prior = result.get(o);
    if (!prior) {
      result.set(o, c);
      return;
    }
    prior.setScale(c.scale);
    this.ev ??= this.ctx.seal.Evaluator(this.ctx.context);
    this.ev.add(prior, c, prior);
    c.delete();
  }
  private ev: ReturnType<CkksContext['seal']['Evaluator']> | null = null;

  /** Sums the terms collected so far into `partial` and starts over with empty kernel memory. */
  private flush(): void {
    if (!this.outputs.size) return;
    const { N, kern } = this;
    const L = this.limbs.length;
    const accs = [0, 1, 2].map(() => kern.alloc(8 * N));
    const data = kern.alloc(8 * 2 * L * N);
    const bytes = this.template.slice();
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (const [o, out] of this.outputs) {
      for (let p = 0; p < 2; p++) {
        this.limbs.forEach((l, j) => {
          const sum = l.wide ? this.sumWide(out.terms, p, j, l, accs) : this.sumNarrow(out.terms, p, j, l, accs);
          kern.k.to_u64(sum, data + 8 * (p * L + j) * N, N);
        });
      }
      view.setFloat64(SCALE_OFFSET, out.scale, true);
      bytes.set(kern.bytes(data, 8 * 2 * L * N), DATA_OFFSET);
      const c = this.ctx.seal.CipherText();
      c.loadArray(this.ctx.context, bytes);
      this.addTo(this.partial, o, c);
    }
    this.outputs.clear();
    this.inputs.length = 0;
    this.inputIndex.clear();
    this.kern.reset();
    this.tableBytes = 0;
  }

  /** A table of `entries` rows of `bytes` each, in kernel memory, reused while big enough. */
  private table(bytes: number): number {
    if (bytes > this.tableBytes) {
      this.tablePtr = this.kern.alloc(bytes);
      this.tableBytes = bytes;
    }
    return this.tablePtr;
  }
  private tablePtr = 0;
  private tableBytes = 0;

  /** q up to 32 bits: W = wh*2^half + wl against the unsplit residues; returns the sum's pointer */
  private sumNarrow(terms: Term[], p: number, j: number, l: Limb, [aH, aL]: number[]): number {
    const { N, kern } = this;
    const quads = Math.ceil(terms.length / 4);
    const at = this.table(80 * quads);
    const ptrs = kern.i32(at, 20 * quads);
    const ws = kern.f64(at, 10 * quads);
    const unit = 2 ** l.half;
    for (let k = 0; k < 4 * quads; k++) {
      // padding terms weigh zero against any valid residue vector
      const t = terms[Math.min(k, terms.length - 1)];
      const w = k < terms.length ? t.w[j] : 0;
      const wh = Math.floor(w / unit);
      const row = k >> 2;
      const lane = k & 3;
      ptrs[20 * row + lane] = this.inputs[t.input].hi[p][j];
      ws[10 * row + 2 + lane] = wh;
      ws[10 * row + 6 + lane] = w - wh * unit;
    }
    kern.f64(aH, N).fill(0);
    kern.f64(aL, N).fill(0);
    const perCall = Math.max(1, Math.floor(l.batch / 4));
    for (let r = 0; r < quads; r += perCall) {
      if (r > 0) this.reduce([aH, aL], l);
      kern.k.narrow4(at + 80 * r, Math.min(perCall, quads - r), aH, aL, N);
    }
    this.reduce([aH, aL], l);
    this.shift(aH, l.half, l);
    kern.k.addmod(aH, aL, N, l.q);
    return aH;
  }

  /** wider q: x and W both split into halves, three accumulators (hi*hi, cross, lo*lo) */
  private sumWide(terms: Term[], p: number, j: number, l: Limb, [aHH, aM, aLL]: number[]): number {
    const { N, kern } = this;
    const pairs = Math.ceil(terms.length / 2);
    const at = this.table(48 * pairs);
    const ptrs = kern.i32(at, 12 * pairs);
    const ws = kern.f64(at, 6 * pairs);
    const unit = 2 ** l.half;
    for (let k = 0; k < 2 * pairs; k++) {
      const t = terms[Math.min(k, terms.length - 1)];
      const w = k < terms.length ? t.w[j] : 0;
      const wh = Math.floor(w / unit);
      const row = k >> 1;
      const lane = k & 1;
      const input = this.inputs[t.input];
      ptrs[12 * row + 2 * lane] = input.hi[p][j];
      ptrs[12 * row + 2 * lane + 1] = input.lo[p][j];
      ws[6 * row + 2 + 2 * lane] = wh;
      ws[6 * row + 3 + 2 * lane] = w - wh * unit;
    }
    for (const a of [aHH, aM, aLL]) kern.f64(a, N).fill(0);
    const perCall = Math.max(1, Math.floor(l.batch / 2));
    for (let r = 0; r < pairs; r += perCall) {
      if (r > 0) this.reduce([aHH, aM, aLL], l);
      kern.k.wide2(at + 48 * r, Math.min(perCall, pairs - r), aHH, aM, aLL, N);
    }
    this.reduce([aHH, aM, aLL], l);
    this.shift(aHH, l.half, l);
    kern.k.addmod(aHH, aM, N, l.q);
    this.shift(aHH, l.half, l);
    kern.k.addmod(aHH, aLL, N, l.q);
    return aHH;
  }

  private reduce(accs: number[], l: Limb): void {
    for (const a of accs) this.kern.k.mulmod(a, this.N, 1, l.q, l.qinv);
  }

  /** a = a * 2^bits mod q, in steps small enough to stay exact */
  private shift(a: number, bits: number, l: Limb): void {
    const step = Math.floor(Math.log2(EXACT / l.q));
    for (let k = bits; k > 0; k -= step) this.kern.k.mulmod(a, this.N, 2 ** Math.min(step, k), l.q, l.qinv);
  }
}

/** Checks the serialization layout this module writes against a real ciphertext's bytes. */
export function checkLayout(template: Uint8Array, c: CipherText, N: number): void {
  const view = new DataView(template.buffer, template.byteOffset, template.byteLength);
  const expected = DATA_OFFSET + 8 * 2 * c.coeffModulusSize * N;
  if (template.length !== expected || view.getFloat64(SCALE_OFFSET, true) !== c.scale) {
    throw new Error(`internal: SEAL's ciphertext serialization is not the layout seal-scalar-sums.ts expects (${template.length} bytes, expected ${expected})`);
  }
}

