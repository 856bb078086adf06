import type { PairSums } from './pair-sums.js';
import type { ScalarSums } from './scalar-sums.js';
import type { PlainSums, ResiduePlain } from './plain-sums.js';

/**
 * The CKKS operations the packings need, behind one interface with two implementations:
 * `SealBackend` (real ciphertexts, server side: no secret key) and `SimBackend` (float64
 * vectors with the same levels, scales and rescale points, for `--mode simulate`). The packing
 * code is written once against this interface, so the simulation runs the very same schedule.
 *
 * Ownership: every method returning a ciphertext or plaintext returns a new object the caller
 * must `free`; `...InPlace` methods modify their first argument.
 */
export interface CkksBackend<C = unknown, P = unknown> {
  readonly slots: number;
  /** chain index of freshly encrypted ciphertexts */
  readonly topLevel: number;
  /** the scale every linear layer's output is brought back to (2^scaleBits) */
  readonly scale: number;
  /** the prime dropped when rescaling from `level` (as a double) */
  prime(level: number): number;

  levelOf(c: C): number;
  scaleOf(c: C): number;
  /** overwrite the scale tag (only to erase last-bit float differences between equal scales) */
  setScale(c: C, scale: number): void;
  free(c: C): void;
  clone(c: C): C;

  add(a: C, b: C): C;
  addInPlace(acc: C, b: C): void;
  subInPlace(acc: C, b: C): void;
  negateInPlace(c: C): void;
  /** c * value, with the constant encoded at `ptScale`; the product has scale scaleOf(c)*ptScale. value must be non-zero. */
  mulConst(c: C, value: number, ptScale: number): C;
  /** acc += c * value (same scale rules as mulConst); saves a temporary */
  mulConstAddInPlace(acc: C, c: C, value: number, ptScale: number): void;
  /**
   * Optional: sums of scalar products at `level` computed in one pass (scalar-sums.ts); null
   * where the level's primes do not fit the kernel. Packings call openScalarSums, which falls
   * back to mulConst / mulConstAddInPlace.
   */
  scalarSums?(level: number): ScalarSums<C> | null;
  /**
   * Optional, together: plaintexts held as residues outside the backend's heap, and sums of
   * ciphertext x plaintext products on them (plain-sums.ts; sample packing's inner sums). null
   * where the level's primes do not fit the kernel; the evaluator then uses encode + mulPlain.
   */
  encodeResidues?(values: Float64Array, scale: number, level: number): ResiduePlain | null;
  plainSums?(level: number): PlainSums<C> | null;
  /** adds the constant `value` to every slot, at the ciphertext's scale */
  addConstInPlace(c: C, value: number): void;

  encode(values: Float64Array, scale: number, level: number): P;
  /** the constant `value` in every slot (cheaper than encode) */
  encodeConst(value: number, scale: number, level: number): P;
  freePlain(p: P): void;
  mulPlain(c: C, p: P): C;
  mulPlainAddInPlace(acc: C, c: C, p: P): void;
  /** adds a plaintext encoded at the ciphertext's scale and level */
  addPlainInPlace(c: C, p: P): void;
  /** adds a vector at the ciphertext's scale */
  addVecInPlace(c: C, values: Float64Array): void;

  /** a*b, relinearized; the two must be at the same level */
  multiply(a: C, b: C): C;
  square(c: C): C;
  /**
   * a*b without relinearization (a size-3 ciphertext that only adds to its kind), and the
   * relinearization done later: a sum of n products then pays one relinearization, not n.
   * Optional: a backend without them (the simulation, whose values are exact) gets `multiply`.
   */
  multiplyNoRelin?(a: C, b: C): C;
  relinearizeInPlace?(c: C): void;
  /**
   * Optional: sums of products computed in one pass (pair-sums.ts), left unrelinearized; null
   * where the level's primes do not fit the kernel. Packings call openPairSums.
   */
  pairSums?(level: number): PairSums<C> | null;
  rescaleInPlace(c: C): void;
  modSwitchInPlace(c: C, level: number): void;
  /** result[i] = c[i + steps] (cyclic) */
  rotate(c: C, steps: number): C;

  /** encrypts a constant vector with the public key (for outputs that no input reaches) */
  encryptVec(values: Float64Array, scale: number, level: number): C;

  serialize(c: C): Uint8Array;
  deserialize(bytes: Uint8Array): C;
}

/** Operation counts for the report (each packing increments them as it goes). */
export interface OpCounts {
  rotations: number;
  ctCtMults: number;
  ptMults: number;
  additions: number;
  rescales: number;
}

export function zeroCounts(): OpCounts {
  return { rotations: 0, ctCtMults: 0, ptMults: 0, additions: 0, rescales: 0 };
}

export function addCounts(a: OpCounts, b: OpCounts): OpCounts {
  return {
    rotations: a.rotations + b.rotations,
    ctCtMults: a.ctCtMults + b.ctCtMults,
    ptMults: a.ptMults + b.ptMults,
    additions: a.additions + b.additions,
    rescales: a.rescales + b.rescales,
  };
}

/** Wraps a backend so every operation is counted. */
export function counting<C, P>(inner: CkksBackend<C, P>, counts: OpCounts): CkksBackend<C, P> {
  return {
    get slots() {
      return inner.slots;
    },
    get topLevel() {
      return inner.topLevel;
    },
    get scale() {
      return inner.scale;
    },
    prime: (l) => inner.prime(l),
    levelOf: (c) => inner.levelOf(c),
    scaleOf: (c) => inner.scaleOf(c),
    setScale: (c, s) => inner.setScale(c, s),
    free: (c) => inner.free(c),
    clone: (c) => inner.clone(c),
    add: (a, b) => (counts.additions++, inner.add(a, b)),
    addInPlace: (a, b) => (counts.additions++, inner.addInPlace(a, b)),
    subInPlace: (a, b) => (counts.additions++, inner.subInPlace(a, b)),
    negateInPlace: (c) => inner.negateInPlace(c),
    mulConst: (c, v, s) => (counts.ptMults++, inner.mulConst(c, v, s)),
    mulConstAddInPlace: (a, c, v, s) => (counts.ptMults++, counts.additions++, inner.mulConstAddInPlace(a, c, v, s)),
    scalarSums: inner.scalarSums ? (level) => countingSums(inner.scalarSums!(level), counts) : undefined,
    encodeResidues: inner.encodeResidues ? (v, s, l) => inner.encodeResidues!(v, s, l) : undefined,
    plainSums: inner.plainSums ? (level) => countingPlains(inner.plainSums!(level), counts) : undefined,
    addConstInPlace: (c, v) => (counts.additions++, inner.addConstInPlace(c, v)),
    encode: (v, s, l) => inner.encode(v, s, l),
    encodeConst: (v, s, l) => inner.encodeConst(v, s, l),
    freePlain: (p) => inner.freePlain(p),
    mulPlain: (c, p) => (counts.ptMults++, inner.mulPlain(c, p)),
    mulPlainAddInPlace: (a, c, p) => (counts.ptMults++, counts.additions++, inner.mulPlainAddInPlace(a, c, p)),
    addPlainInPlace: (c, p) => (counts.additions++, inner.addPlainInPlace(c, p)),
    addVecInPlace: (c, v) => (counts.additions++, inner.addVecInPlace(c, v)),
    multiply: (a, b) => (counts.ctCtMults++, inner.multiply(a, b)),
    square: (c) => (counts.ctCtMults++, inner.square(c)),
    // without these two the dot steps relinearized every product instead of every sum
    multiplyNoRelin: inner.multiplyNoRelin ? (a, b) => (counts.ctCtMults++, inner.multiplyNoRelin!(a, b)) : undefined,
    relinearizeInPlace: inner.relinearizeInPlace ? (c) => inner.relinearizeInPlace!(c) : undefined,
    pairSums: inner.pairSums ? (level) => countingPairs(inner.pairSums!(level), counts) : undefined,
    rescaleInPlace: (c) => (counts.rescales++, inner.rescaleInPlace(c)),
    modSwitchInPlace: (c, l) => inner.modSwitchInPlace(c, l),
    rotate: (c, s) => (counts.rotations++, inner.rotate(c, s)),
    encryptVec: (v, s, l) => inner.encryptVec(v, s, l),
    serialize: (c) => inner.serialize(c),
    deserialize: (b) => inner.deserialize(b),
  };
}

/** Counts a fused sum's terms as the products and additions they replace. */
function countingSums<C>(inner: ScalarSums<C> | null, counts: OpCounts): ScalarSums<C> | null {
  if (!inner) return null;
  const seen = new Set<number>();
  return {
    add: (o, x, v, s, key) => {
      counts.ptMults++;
      if (seen.has(o)) counts.additions++;
      else seen.add(o);
      inner.add(o, x, v, s, key);
    },
    finish: () => inner.finish(),
  };
}

/** Counts a plaintext sum's terms as the products and additions they replace. */
function countingPlains<C>(inner: PlainSums<C> | null, counts: OpCounts): PlainSums<C> | null {
  if (!inner) return null;
  return {
    capacity: inner.capacity,
    has: (key) => inner.has(key),
    load: (key, x) => inner.load(key, x),
    reset: () => inner.reset(),
    sum: (terms) => {
      counts.ptMults += terms.length;
      counts.additions += terms.length - 1;
      return inner.sum(terms);
    },
    close: () => inner.close(),
  };
}

/** Counts a fused pair sum's terms as the products and additions they replace. */
function countingPairs<C>(inner: PairSums<C> | null, counts: OpCounts): PairSums<C> | null {
  if (!inner) return null;
  const seen = new Set<number>();
  return {
    has: (key) => inner.has(key),
    load: (key, x) => inner.load(key, x),
    add: (o, a, b, negate) => {
      counts.ctCtMults++;
      if (seen.has(o)) counts.additions++;
      else seen.add(o);
      inner.add(o, a, b, negate);
    },
    finishEach: (take) => {
      seen.clear();
      inner.finishEach(take);
    },
    close: () => inner.close(),
  };
}
