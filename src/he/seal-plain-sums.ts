import type { PlainSums, ResiduePlain } from './plain-sums.js';
import { isWideLimb as isWide, type Limb, limbsAt, RESIDUE_BUDGET, residueBytes, ResidueArena, type Residues, termsBetweenReductions as batchOf } from './residue-arena.js';
import type { ResidueKernels } from './residue-kernels.js';
import type { CipherText, CkksContext } from './seal.js';

/**
 * Sums of ciphertext x plaintext products on the residues. In NTT form a product with a
 * plaintext p is, residue by residue, (p x0, p x1) mod q: SEAL's multiply_plain. Summed over a
 * giant step's items with the plaintext's residues split into halves (and, on limbs wider than
 * 32 bits, the ciphertext's too), every product and running sum stays an exact float64 integer,
 * reduced once per batch of terms: SEAL's multiply_plain + add sequence, byte for byte, without
 * its emulated 128-bit reduction per product. The plaintexts stay outside SEAL's wasm heap
 * (`encodeResidues` in seal-backend.ts), so a deep network's diagonals do not press on its
 * 4 GiB.
 */

/** Inputs a plaintext sum holds at these limbs within the residue budget (the dry run splits the same way). */
export function plainSumCapacity(N: number, limbs: { bits: number }[], budget = RESIDUE_BUDGET): number {
  return Math.max(1, Math.floor(budget / residueBytes(N, limbs)));
}

export class SealPlainSums implements PlainSums<CipherText> {
  private readonly limbs: Limb[];
  private readonly arena: ResidueArena;
  private readonly inputs = new Map<string, { residues: Residues; scale: number }>();
  private readonly N: number;
  readonly capacity: number;

  constructor(
    private readonly ctx: CkksContext,
    private readonly level: number,
    /** a serialized size-2 ciphertext at `level`: the outputs' header and parms id */
    private readonly template: Uint8Array,
    private readonly tolerance: number,
    /** an encryption of zero at `level` and `scale` (a sum whose plaintexts are all zero) */
    private readonly zeroAt: (scale: number) => CipherText,
    kern: ResidueKernels,
    budget = RESIDUE_BUDGET,
  ) {
    this.N = ctx.params.polyModulusDegree;
    this.limbs = limbsAt(ctx, level)!;
    this.arena = new ResidueArena(ctx, level, this.limbs, kern);
    this.arena.reset();
    this.capacity = plainSumCapacity(this.N, this.limbs, budget);
  }

  static supports(ctx: CkksContext, level: number): boolean {
    return limbsAt(ctx, level) !== null;
  }

  has(key: string): boolean {
    return this.inputs.has(key);
  }

  load(key: string, x: CipherText): void {
    if (x.size !== 2) throw new Error(`internal: a size-${x.size} input in a plaintext sum`);
    if (this.inputs.size >= this.capacity) throw new Error(`internal: more than ${this.capacity} inputs in a plaintext sum without a reset`);
    this.inputs.set(key, { residues: this.arena.read(x, isWide), scale: x.scale });
  }

  sum(terms: readonly { key: string; p: ResiduePlain }[]): CipherText {
    const live = terms.filter((t) => !t.p.zero);
    const scale = this.inputs.get(terms[0].key)!.scale * terms[0].p.scale;
    for (const t of terms) {
      const s = this.inputs.get(t.key)!.scale * t.p.scale;
      if (t.p.level !== this.level) throw new Error(`internal: a level-${t.p.level} plaintext in a sum at level ${this.level}`);
      if (Math.abs(s - scale) > this.tolerance * Math.max(s, scale)) throw new Error(`internal: summing products with scales 2^${Math.log2(s).toFixed(3)} and 2^${Math.log2(scale).toFixed(3)}`);
    }
    if (!live.length) return this.zeroAt(scale);
    const mark = this.arena.used;
    const { N, arena } = this;
    const L = this.limbs.length;
    const accs = arena.alloc(8 * 6 * N);
    const plains = arena.alloc(8 * live.length * N);
    const data = arena.alloc(8 * 2 * L * N);
    this.limbs.forEach((l, j) => {
      const staged = arena.kern.f64(plains, live.length * N);
      live.forEach((t, k) => staged.set(t.p.limbs![j], k * N));
      const [r0, r1] = isWide(l) ? this.sumWide(live, j, l, plains, accs) : this.sumNarrow(live, j, l, plains, accs);
      arena.kern.k.to_u64(r0, data + 8 * j * N, N);
      arena.kern.k.to_u64(r1, data + 8 * (L + j) * N, N);
    });
    const out = arena.ciphertext(this.template, data, 2, scale);
    arena.release(mark);
    return out;
  }

  /** q up to 32 bits: accumulators (wh.x0, wl.x0, wh.x1, wl.x1); returns each polynomial's sum */
  private sumNarrow(terms: readonly { key: string }[], j: number, l: Limb, plains: number, accs: number): [number, number] {
    const { N, arena } = this;
    const at = arena.table(16 * terms.length);
    const ptrs = arena.kern.i32(at, 4 * terms.length);
    terms.forEach((t, k) => {
      const x = this.inputs.get(t.key)!.residues;
      ptrs.set([x.hi[0][j], x.hi[1][j], plains + 8 * k * N, 0], 4 * k);
    });
    const acc = [0, 1, 2, 3].map((k) => accs + 8 * k * N);
    arena.batched(acc, l, terms.length, batchOf(l), (r, count) => arena.kern.k.vnarrow(at + 16 * r, count, accs, N, 2 ** l.half, 2 ** -l.half));
    return [arena.combineNarrow(acc[0], acc[1], l), arena.combineNarrow(acc[2], acc[3], l)];
  }

  /** wider q: the inputs' halves too, accumulators (hi*hi, cross, lo*lo) per polynomial */
  private sumWide(terms: readonly { key: string }[], j: number, l: Limb, plains: number, accs: number): [number, number] {
    const { N, arena } = this;
    const at = arena.table(32 * terms.length);
    const ptrs = arena.kern.i32(at, 8 * terms.length);
    terms.forEach((t, k) => {
      const x = this.inputs.get(t.key)!.residues;
      ptrs.set([x.hi[0][j], x.lo[0][j], x.hi[1][j], x.lo[1][j], plains + 8 * k * N, 0, 0, 0], 8 * k);
    });
    const acc = [0, 1, 2, 3, 4, 5].map((k) => accs + 8 * k * N);
    arena.batched(acc, l, terms.length, batchOf(l), (r, count) => arena.kern.k.vwide(at + 32 * r, count, accs, N, 2 ** l.half, 2 ** -l.half));
    return [arena.combineHalves(acc.slice(0, 3), l), arena.combineHalves(acc.slice(3), l)];
  }

  reset(): void {
    this.inputs.clear();
    this.arena.reset();
  }

  close(): void {
    this.reset();
    this.arena.close();
  }
}
