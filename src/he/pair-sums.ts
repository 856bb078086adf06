import type { CkksBackend } from './backend.js';

/**
 * Sums of ciphertext * ciphertext products, one per output element, left unrelinearized so the
 * caller relinearizes each sum once: a batch-packed `dot` step (attention's scores and values,
 * Goldschmidt's division steps, squares). Operands are loaded once by key and stay loaded until
 * `close`; outputs are handed over by `finishEach`, so a caller going through its outputs in
 * chunks holds one chunk of products at a time. A backend may compute the products on the
 * residues in one pass (seal-pair-sums.ts); `ProductPairSums` is SEAL's sequence of products.
 */
export interface PairSums<C> {
  has(key: string): boolean;
  /** operand `key` is x (x may be freed once this returns) */
  load(key: string, x: C): void;
  /** sum[o] += a * b, negated when asked */
  add(o: number, keyA: string, keyB: string, negate: boolean): void;
  /** the sums added since the last call, each handed over (owned by `take`) */
  finishEach(take: (o: number, c: C) => void): void;
  close(): void;
}

/** Products one at a time, left unrelinearized when the backend can. */
export class ProductPairSums<C> implements PairSums<C> {
  private readonly operands = new Map<string, C>();
  private pending = new Map<number, { a: string; b: string; negate: boolean }[]>();

  constructor(
    private readonly be: CkksBackend<C>,
    private readonly level: number,
  ) {}

  has(key: string): boolean {
    return this.operands.has(key);
  }

  load(key: string, x: C): void {
    const c = this.be.clone(x);
    if (this.be.levelOf(c) > this.level) this.be.modSwitchInPlace(c, this.level);
    this.operands.set(key, c);
  }

  add(o: number, a: string, b: string, negate: boolean): void {
    let terms = this.pending.get(o);
    if (!terms) this.pending.set(o, (terms = []));
    terms.push({ a, b, negate });
  }

  finishEach(take: (o: number, c: C) => void): void {
    const { be } = this;
    const lazy = !!be.multiplyNoRelin;
    const pending = this.pending;
    this.pending = new Map();
    for (const [o, terms] of pending) {
      let acc: C | null = null;
      for (const t of terms) {
        const a = this.operands.get(t.a)!;
        const b = this.operands.get(t.b)!;
        // squares too stay unrelinearized where they can: the caller relinearizes every sum once
        const prod = lazy ? be.multiplyNoRelin!(a, b) : a === b ? be.square(a) : be.multiply(a, b);
        if (t.negate) be.negateInPlace(prod);
        if (!acc) acc = prod;
        else {
          be.addInPlace(acc, prod);
          be.free(prod);
        }
      }
      if (acc) take(o, acc);
    }
  }

  close(): void {
    for (const c of this.operands.values()) this.be.free(c);
    this.operands.clear();
  }
}

/**
 * Fewest pairs per output (on average over a step) for which the fused sums are used: each
 * sum is read out of the residues once, and relinearizing it costs most of a product, so
 * below ~4 pairs SEAL's own multiplies are as fast or faster (`npx tsx bench/pair-sums.ts`:
 * SEAL / fused 0.83 at 1 pair, 0.97 at 4, 1.06 at 8 at N=4096; 0.88, 1.01, 1.18 at N=8192).
 */
export const FUSED_MIN_PAIRS = 4;

/** The backend's fused pair sums where it has them and outputs sum enough pairs, products one at a time otherwise. */
export function openPairSums<C>(be: CkksBackend<C>, level: number, pairsPerOutput: number): PairSums<C> {
  const fused = pairsPerOutput >= FUSED_MIN_PAIRS ? be.pairSums?.(level) : undefined;
  return fused ?? new ProductPairSums(be, level);
}
