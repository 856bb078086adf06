import { isWideLimb as isWide, type Limb, limbsAt, RESIDUE_BUDGET, ResidueArena, type Residues, termsBetweenReductions as batchOf } from './residue-arena.js';
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
 * Residues come in and go out through residue-arena.ts: each input is read once, each output
 * written once, so the copies cost O(ciphertexts), not O(terms).
 */

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
  private readonly arena: ResidueArena;
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
    this.limbs = limbsAt(ctx, level)!;
    this.arena = new ResidueArena(ctx, level, this.limbs);
  }

  /** Whether every limb of `level` fits the kernel (else the caller uses SEAL's products). */
  static supports(ctx: CkksContext, level: number): boolean {
    return limbsAt(ctx, level) !== null;
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

  /** Reads x's residues once per key. */
  private residuesOf(x: CipherText, key: string): number {
    const known = this.inputIndex.get(key);
    if (known !== undefined) return known;
    if (this.outputs.size && this.arena.used + this.arena.bytesFor(isWide) > this.budget) this.flush();
    this.inputs.push(this.arena.read(x, isWide));
    this.inputIndex.set(key, this.inputs.length - 1);
    return this.inputs.length - 1;
  }

  finish(): Map<number, CipherText> {
    this.flush();
    const result = this.sealSums ? this.sealSums.finish() : new Map<number, CipherText>();
    for (const [o, c] of this.partial) this.addTo(result, o, c);
    this.partial.clear();
    this.arena.close();
    return result;
  }

  /** Adds `c` into result[o] (taking ownership). */
  private addTo(result: Map<number, CipherText>, o: number, c: CipherText): void {
    const prior = result.get(o);
    if (!prior) {
      result.set(o, c);
      return;
    }
    this.arena.addInto(prior, c);
  }

  /** Sums the terms collected so far into `partial` and starts over with empty kernel memory. */
  private flush(): void {
    if (!this.outputs.size) return;
    const { N, arena } = this;
    const L = this.limbs.length;
    const accs = [0, 1, 2].map(() => arena.alloc(8 * N));
    const data = arena.alloc(8 * 2 * L * N);
    for (const [o, out] of this.outputs) {
      for (let p = 0; p < 2; p++) {
        this.limbs.forEach((l, j) => {
          const sum = isWide(l) ? this.sumWide(out.terms, p, j, l, accs) : this.sumNarrow(out.terms, p, j, l, accs);
          arena.kern.k.to_u64(sum, data + 8 * (p * L + j) * N, N);
        });
      }
      this.addTo(this.partial, o, arena.ciphertext(this.template, data, 2, out.scale));
    }
    this.outputs.clear();
    this.inputs.length = 0;
    this.inputIndex.clear();
    arena.reset();
  }

  /** q up to 32 bits: W = wh*2^half + wl against the unsplit residues; returns the sum's pointer */
  private sumNarrow(terms: Term[], p: number, j: number, l: Limb, [aH, aL]: number[]): number {
    const { N, arena } = this;
    const kern = arena.kern;
    const quads = Math.ceil(terms.length / 4);
    const at = arena.table(80 * quads);
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
    arena.batched([aH, aL], l, quads, Math.max(1, Math.floor(batchOf(l) / 4)), (r, count) => kern.k.narrow4(at + 80 * r, count, aH, aL, N));
    return arena.combineNarrow(aH, aL, l);
  }

  /** wider q: x and W both split into halves, three accumulators (hi*hi, cross, lo*lo) */
  private sumWide(terms: Term[], p: number, j: number, l: Limb, [aHH, aM, aLL]: number[]): number {
    const { N, arena } = this;
    const kern = arena.kern;
    const pairs = Math.ceil(terms.length / 2);
    const at = arena.table(48 * pairs);
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
    arena.batched([aHH, aM, aLL], l, pairs, Math.max(1, Math.floor(batchOf(l) / 2)), (r, count) => kern.k.wide2(at + 48 * r, count, aHH, aM, aLL, N));
    return arena.combineHalves([aHH, aM, aLL], l);
  }
}
