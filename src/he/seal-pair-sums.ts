import type { PairSums } from './pair-sums.js';
import { EXACT, type Limb, limbsAt, RESIDUE_BUDGET, ResidueArena, type Residues } from './residue-arena.js';
import type { CipherText, CkksContext } from './seal.js';

/**
 * Sums of ciphertext products computed on the residues. In NTT form a product of (a0, a1) and
 * (b0, b1) is, residue by residue, (a0 b0, a0 b1 + a1 b0, a1 b1) mod q: SEAL's dyadic product.
 * Summed over an output's pairs with every residue split into halves (products of halves and
 * their running sums stay exact in float64), reduced once per batch of terms: SEAL's
 * unrelinearized sum, byte for byte, for a tenth of the per-product cost. The caller
 * relinearizes each sum once, as before.
 */

const splitAll = () => true;

/** Terms between two reductions: the cross accumulator of c1 takes four products of halves per term. */
function batchOf(l: Limb): number {
  return Math.max(1, Math.floor((EXACT - l.q) / 2 ** (2 * l.half + 2)));
}

interface Operand {
  residues: Residues;
  scale: number;
}

interface Term {
  a: Residues;
  b: Residues;
  sign: number;
}

export class SealPairSums implements PairSums<CipherText> {
  private readonly limbs: Limb[];
  private readonly arena: ResidueArena;
  private readonly operands = new Map<string, Operand>();
  private pending = new Map<number, { scale: number; terms: Term[] }>();
  /** sums of terms before a budget flush */
  private readonly partial = new Map<number, CipherText>();
  /** accumulators and output residues, reused by every chunk of outputs until the arena is reset */
  private work: { accs: number; data: number } | null = null;

  constructor(
    private readonly ctx: CkksContext,
    level: number,
    /** a serialized size-3 ciphertext at `level` (the outputs' header and parms id) */
    private readonly template: Uint8Array,
    private readonly tolerance: number,
    private readonly budget = RESIDUE_BUDGET,
  ) {
    this.limbs = limbsAt(ctx, level)!;
    this.arena = new ResidueArena(ctx, level, this.limbs);
  }

  static supports(ctx: CkksContext, level: number): boolean {
    return limbsAt(ctx, level) !== null;
  }

  has(key: string): boolean {
    return this.operands.has(key);
  }

  load(key: string, x: CipherText): void {
    if (x.size !== 2) throw new Error(`internal: a size-${x.size} operand in a product sum`);
    if (this.arena.used + this.arena.bytesFor(splitAll) > this.budget) this.flush();
    this.operands.set(key, { residues: this.arena.read(x, splitAll), scale: x.scale });
  }

  add(o: number, keyA: string, keyB: string, negate: boolean): void {
    const a = this.operands.get(keyA)!;
    const b = this.operands.get(keyB)!;
    const scale = a.scale * b.scale;
    let out = this.pending.get(o);
    if (!out) this.pending.set(o, (out = { scale, terms: [] }));
    else if (Math.abs(out.scale - scale) > this.tolerance * Math.max(out.scale, scale)) {
      throw new Error(`internal: summing products with scales 2^${Math.log2(out.scale).toFixed(3)} and 2^${Math.log2(scale).toFixed(3)}`);
    }
    out.terms.push({ a: a.residues, b: b.residues, sign: negate ? -1 : 1 });
  }

  finishEach(take: (o: number, c: CipherText) => void): void {
    const pending = this.pending;
    this.pending = new Map();
    this.compute(pending, (o, c) => {
      const prior = this.partial.get(o);
      if (prior) {
        this.partial.delete(o);
        this.arena.addInto(prior, c);
        take(o, prior);
      } else take(o, c);
    });
    // outputs whose every term came before a flush
    for (const [o, c] of this.partial) take(o, c);
    this.partial.clear();
  }

  close(): void {
    this.operands.clear();
    this.arena.reset();
    this.work = null;
    this.arena.close();
  }

  /** Out of kernel memory: the pending terms become partial sums, and every operand is forgotten (the caller reloads). */
  private flush(): void {
    const pending = this.pending;
    this.pending = new Map();
    this.compute(pending, (o, c) => {
      const prior = this.partial.get(o);
      if (prior) this.arena.addInto(prior, c);
      else this.partial.set(o, c);
    });
    this.operands.clear();
    this.arena.reset();
    this.work = null;
  }

  private compute(pending: Map<number, { scale: number; terms: Term[] }>, each: (o: number, c: CipherText) => void): void {
    if (!pending.size) return;
    const { arena } = this;
    const { N } = arena;
    const L = this.limbs.length;
    // taken after the operands, so a flush's reset frees them with everything else
    this.work ??= { accs: arena.alloc(9 * 8 * N), data: arena.alloc(3 * 8 * L * N) };
    const { accs, data } = this.work;
    for (const [o, out] of pending) {
      this.limbs.forEach((l, j) => this.sumLimb(out.terms, j, l, accs, data));
      each(o, arena.ciphertext(this.template, data, 3, out.scale));
    }
  }

  /** The three polynomials' residues of limb j, written to `data`. */
  private sumLimb(terms: Term[], j: number, l: Limb, accs: number, data: number): void {
    const { arena } = this;
    const { N, kern } = arena;
    const L = this.limbs.length;
    const at = arena.table(40 * terms.length);
    const ptrs = kern.i32(at, 10 * terms.length);
    const signs = kern.f64(at, 5 * terms.length);
    terms.forEach((t, k) => {
      ptrs.set([t.a.hi[0][j], t.a.lo[0][j], t.a.hi[1][j], t.a.lo[1][j], t.b.hi[0][j], t.b.lo[0][j], t.b.hi[1][j], t.b.lo[1][j]], 10 * k);
      signs[5 * k + 4] = t.sign;
    });
    const acc = (k: number) => accs + 8 * N * k;
    const all = Array.from({ length: 9 }, (_, k) => acc(k));
    arena.zero(...all);
    const batch = batchOf(l);
    for (let r = 0; r < terms.length; r += batch) {
      if (r > 0) arena.reduce(all, l);
      kern.k.pairs(at + 40 * r, Math.min(batch, terms.length - r), accs, N);
    }
    for (let p = 0; p < 3; p++) {
      const sum = arena.combineHalves([acc(3 * p), acc(3 * p + 1), acc(3 * p + 2)], l);
      kern.k.to_u64(sum, data + 8 * (p * L + j) * N, N);
    }
  }
}
