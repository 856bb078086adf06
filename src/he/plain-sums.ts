/**
 * Sums of ciphertext x plaintext-vector products: the inner sums of the diagonal method
 * (sample packing's linear layers), sum over items of diag_i . rot_b(x_i). A backend may
 * compute them on the residues in one pass (seal-plain-sums.ts) with its plaintexts held as
 * residues outside SEAL's heap; without one, the evaluator uses mulPlain / mulPlainAddInPlace.
 *
 * Same contract as that sequence: the sum has the scale of its products, scaleOf(x) * p.scale,
 * and the level of its inputs, which must all be at the level the sums were opened for.
 */
export interface ResiduePlain {
  readonly level: number;
  readonly scale: number;
  /**
   * residues (NTT form) per limb, N each: 32-bit words where the prime fits them, float64
   * where wider; null on backends that only count (the dry run)
   */
  readonly limbs: (Uint32Array | Float64Array)[] | null;
  /** bytes the residues hold (what the dry run reports too) */
  readonly bytes: number;
  /** every residue is zero: the product adds nothing */
  readonly zero: boolean;
}

export interface PlainSums<C> {
  /** inputs it holds at once (its memory budget); a caller with more loads them in groups, with `reset` between */
  readonly capacity: number;
  has(key: string): boolean;
  /** input `key` is x (x may be freed once this returns) */
  load(key: string, x: C): void;
  /** sum over terms of input[key] * p: a new ciphertext, the caller's */
  sum(terms: readonly { key: string; p: ResiduePlain }[]): C;
  /** forgets the inputs (the next group follows) */
  reset(): void;
  /** forgets the inputs, done */
  close(): void;
}
