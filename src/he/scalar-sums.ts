import type { CkksBackend } from './backend.js';

/**
 * Sums of ciphertext * scalar products, one sum per output element: the whole of a batch-packed
 * linear layer (every weight is one scalar applied to one ciphertext). Terms are collected
 * first and the sums made at `finish`, so a backend can compute all of them in one pass over
 * the residues (see seal-scalar-sums.ts) instead of one plaintext product per term.
 *
 * Same contract as the sequence it replaces: the sum of output o has the scale of its first
 * product (scaleOf(x) * ptScale), the level passed to `open`, and terms whose constant rounds to
 * zero at its scale are dropped.
 */
export interface ScalarSums<C> {
  /**
   * sum[o] += x * value, the constant encoded at ptScale; x may be freed once this returns.
   * `key` names the input element (the same key, the same ciphertext) so its residues are read
   * once however many outputs it feeds.
   */
  add(o: number, x: C, value: number, ptScale: number, key: string): void;
  /** the sums (owned by the caller); outputs without a term are absent */
  finish(): Map<number, C>;
}

/** The plain sequence of mulConst / mulConstAddInPlace, for backends without a fused kernel. */
export class ProductSums<C> implements ScalarSums<C> {
  private readonly acc = new Map<number, C>();
  /** inputs above the sums' level, switched down once each */
  private readonly switched = new Map<string, C>();

  constructor(
    private readonly be: CkksBackend<C>,
    private readonly level: number,
  ) {}

  add(o: number, x: C, value: number, ptScale: number, key: string): void {
    const y = this.atLevel(x, key);
    const a = this.acc.get(o);
    if (a) this.be.mulConstAddInPlace(a, y, value, ptScale);
    else this.acc.set(o, this.be.mulConst(y, value, ptScale));
  }

  private atLevel(x: C, key: string): C {
    if (this.be.levelOf(x) <= this.level) return x;
    let y = this.switched.get(key);
    if (!y) {
      y = this.be.clone(x);
      this.be.modSwitchInPlace(y, this.level);
      this.switched.set(key, y);
    }
    return y;
  }

  finish(): Map<number, C> {
    for (const y of this.switched.values()) this.be.free(y);
    this.switched.clear();
    return this.acc;
  }
}

/** The backend's fused sums where it has them, the product sequence otherwise. */
export function openScalarSums<C>(be: CkksBackend<C>, level: number): ScalarSums<C> {
  return be.scalarSums?.(level) ?? new ProductSums(be, level);
}
