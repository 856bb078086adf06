import { type CkksBackend, type OpCounts, counting, zeroCounts } from '../backend.js';
import type { HeParams } from '../params.js';
import { levelsOf } from '../params.js';
import type { PairSums } from '../pair-sums.js';
import type { PlainSums, ResiduePlain } from '../plain-sums.js';
import { plainSumCapacity } from '../seal-plain-sums.js';
import type { ScalarSums } from '../scalar-sums.js';
import { MAX_KERNEL_BITS } from '../residue-arena.js';

/**
 * A backend that evaluates nothing: a ciphertext is its level and scale. Running an evaluator
 * on it walks the exact schedule the real run walks (the packings decide everything from
 * shapes, levels and weights, never from slot values), so the operation counts it yields are
 * the evaluator's own counts, by construction, at the cost of a few loops. It also tallies
 * every operation by the level it runs at (cost grows with the primes left) and tracks live
 * ciphertext and plaintext bytes for the memory prediction.
 */

export interface DryCt {
  level: number;
  scale: number;
  /** the size of its allocation in SEAL's heap, fixed when it was made (see `poolBytes`) */
  bytes?: number;
}

/** Server-side operations, plus the client's encrypt/decrypt, each timed by the calibration. */
export type OpKind =
  | 'rotate' | 'multiply' | 'multiplyNoRelin' | 'relinearize' | 'mulPlain' | 'mulConst' | 'add' | 'rescale' | 'encode' | 'clone' | 'serialize' | 'deserialize' | 'encrypt' | 'decrypt'
  | 'sumTerm' | 'sumInput' | 'sumOutput' | 'pairTerm' | 'pairInput' | 'pairOutput' | 'plainTerm';

/**
 * sumTerm / sumInput / sumOutput: a fused scalar sum's terms, inputs read and outputs written
 * (scalar-sums.ts); pairTerm / pairInput / pairOutput the same for fused pair sums (pair-sums.ts);
 * plainTerm a term of a plaintext sum (plain-sums.ts), whose inputs and outputs cost as a
 * scalar sum's
 */
export const OP_KINDS: OpKind[] = [
  'rotate', 'multiply', 'multiplyNoRelin', 'relinearize', 'mulPlain', 'mulConst', 'add', 'rescale', 'encode', 'clone', 'serialize', 'deserialize', 'encrypt', 'decrypt',
  'sumTerm', 'sumInput', 'sumOutput', 'pairTerm', 'pairInput', 'pairOutput', 'plainTerm',
];

export interface DryTally {
  /** ops[kind][level] = count */
  ops: Record<OpKind, number[]>;
  liveBytes: number;
  peakBytes: number;
  /** plaintext bytes alive at the peak of the run (diagonals, biases) */
  plainBytes: number;
  /**
   * What SEAL's heap holds at the end: its memory pools are per allocation size and keep what
   * is freed for the next allocation of that size, never for another, so the heap is the sum
   * over sizes of each size's own peak (a ciphertext at every level is a different size).
   */
  poolBytes: number;
}

export class DryBackend implements CkksBackend<DryCt, DryCt> {
  readonly slots: number;
  readonly topLevel: number;
  readonly scale: number;
  readonly tally: DryTally;
  private readonly bits: number[];
  private readonly N: number;
  private plainLive = 0;
  /** live allocations and their peak, per allocation size in bytes */
  private readonly pools = new Map<number, { live: number; peak: number }>();

  constructor(params: HeParams) {
    this.N = params.polyModulusDegree;
    this.slots = this.N / 2;
    this.topLevel = levelsOf(params);
    this.scale = 2 ** params.scaleBits;
    this.bits = params.coeffModulusBits.slice(0, -1);
    const ops = Object.fromEntries(OP_KINDS.map((k) => [k, new Array(this.topLevel + 1).fill(0)])) as Record<OpKind, number[]>;
    this.tally = { ops, liveBytes: 0, peakBytes: 0, plainBytes: 0, poolBytes: 0 };
  }

  prime(level: number): number {
    return 2 ** this.bits[level];
  }

  private op(kind: OpKind, level: number): void {
    this.tally.ops[kind][level]++;
  }

  private alloc(bytes: number): void {
    const p = this.pools.get(bytes) ?? { live: 0, peak: 0 };
    p.live++;
    if (p.live > p.peak) {
      p.peak = p.live;
      this.tally.poolBytes += bytes;
    }
    this.pools.set(bytes, p);
  }

  private release(bytes: number): void {
    this.pools.get(bytes)!.live--;
  }

  /**
   * SEAL's in-place rescale and modulus switch shrink a ciphertext within its allocation (a
   * vector's capacity stays): live data shrinks, the heap does not (measured on node-seal).
   */
  private shrink(c: DryCt, level: number): void {
    this.tally.liveBytes -= ciphertextMemory(this.N, c.level) - ciphertextMemory(this.N, level);
  }

  /** `polys` = 3 for a product: SEAL grows it to three polynomials before relinearizing, and the capacity stays */
  private ct(level: number, scale: number, polys = 2): DryCt {
    const bytes = (ciphertextMemory(this.N, level) / 2) * polys;
    this.alloc(bytes);
    this.tally.liveBytes += ciphertextMemory(this.N, level);
    this.tally.peakBytes = Math.max(this.tally.peakBytes, this.tally.liveBytes + this.plainLive);
    return { level, scale, bytes };
  }

  /** `allocLevel`: SEAL encodes at the top level and switches down in place (the allocation stays) */
  private pt(level: number, scale: number, allocLevel = level): DryCt {
    const bytes = plaintextMemory(this.N, allocLevel);
    this.alloc(bytes);
    this.plainLive += plaintextMemory(this.N, level);
    this.tally.plainBytes = Math.max(this.tally.plainBytes, this.plainLive);
    this.tally.peakBytes = Math.max(this.tally.peakBytes, this.tally.liveBytes + this.plainLive);
    return { level, scale, bytes };
  }

  levelOf(c: DryCt): number {
    return c.level;
  }
  scaleOf(c: DryCt): number {
    return c.scale;
  }
  setScale(c: DryCt, scale: number): void {
    c.scale = scale;
  }
  free(c: DryCt): void {
    this.release(c.bytes ?? ciphertextMemory(this.N, c.level));
    this.tally.liveBytes -= ciphertextMemory(this.N, c.level);
  }
  clone(c: DryCt): DryCt {
    this.op('clone', c.level);
    return this.ct(c.level, c.scale);
  }
  add(a: DryCt): DryCt {
    this.op('add', a.level);
    return this.ct(a.level, a.scale);
  }
  addInPlace(a: DryCt): void {
    this.op('add', a.level);
  }
  subInPlace(a: DryCt): void {
    this.op('add', a.level);
  }
  negateInPlace(c: DryCt): void {
    this.op('add', c.level);
  }
  mulConst(c: DryCt, _v: number, s: number): DryCt {
    this.op('mulConst', c.level);
    return this.ct(c.level, c.scale * s);
  }
  mulConstAddInPlace(_acc: DryCt, c: DryCt): void {
    this.op('mulConst', c.level);
    this.op('add', c.level);
  }
  addConstInPlace(c: DryCt): void {
    this.op('add', c.level);
  }
  /** the fused sums where SEAL's backend has them (every data prime within the kernel's width) */
  scalarSums(level: number): ScalarSums<DryCt> | null {
    if (this.bits.some((b) => b > MAX_KERNEL_BITS)) return null;
    const read = new Set<string>();
    const out = new Map<number, DryCt>();
    return {
      add: (o, x, value, ptScale, key) => {
        if (Math.round(value * ptScale) === 0 && out.has(o)) return;
        if (!read.has(key)) this.op('sumInput', level);
        read.add(key);
        this.op('sumTerm', level);
        if (!out.has(o)) out.set(o, { level, scale: x.scale * ptScale });
      },
      finish: () => {
        const made = new Map<number, DryCt>();
        for (const [o, c] of out) {
          this.op('sumOutput', level);
          made.set(o, this.ct(level, c.scale));
        }
        return made;
      },
    };
  }
  /**
   * plaintexts as residues where SEAL's backend keeps them so: outside its heap, so no
   * allocation here (poolBytes models SEAL's heap; the residues are JS memory)
   */
  encodeResidues(_v: Float64Array, scale: number, level: number): ResiduePlain | null {
    if (this.bits.some((b) => b > MAX_KERNEL_BITS)) return null;
    this.op('encode', level);
    const bytes = this.bits.slice(0, level + 1).reduce((a, b) => a + (b > 32 ? 8 : 4) * this.N, 0);
    return { level, scale, limbs: null, bytes, zero: false };
  }
  /** the plaintext sums where SEAL's backend has them (as scalarSums) */
  plainSums(level: number): PlainSums<DryCt> | null {
    if (this.bits.some((b) => b > MAX_KERNEL_BITS)) return null;
    const loaded = new Map<string, number>();
    return {
      capacity: plainSumCapacity(this.N, this.bits.slice(0, level + 1).map((bits) => ({ bits }))),
      has: (key) => loaded.has(key),
      load: (key, x) => {
        this.op('sumInput', level);
        loaded.set(key, x.scale);
      },
      sum: (terms) => {
        for (let k = 0; k < terms.length; k++) this.op('plainTerm', level);
        this.op('sumOutput', level);
        return this.ct(level, loaded.get(terms[0].key)! * terms[0].p.scale);
      },
      reset: () => loaded.clear(),
      close: () => loaded.clear(),
    };
  }
  /** the fused pair sums where SEAL's backend has them (as scalarSums) */
  pairSums(level: number): PairSums<DryCt> | null {
    if (this.bits.some((b) => b > MAX_KERNEL_BITS)) return null;
    const loaded = new Map<string, number>();
    let pending = new Map<number, number>();
    return {
      has: (key) => loaded.has(key),
      load: (key, x) => {
        this.op('pairInput', level);
        loaded.set(key, x.scale);
      },
      add: (o, a, b) => {
        this.op('pairTerm', level);
        if (!pending.has(o)) pending.set(o, loaded.get(a)! * loaded.get(b)!);
      },
      finishEach: (take) => {
        const done = pending;
        pending = new Map();
        for (const [o, scale] of done) {
          this.op('pairOutput', level);
          take(o, this.ct(level, scale, 3));
        }
      },
      close: () => loaded.clear(),
    };
  }
  multiplyNoRelin(a: DryCt, b: DryCt): DryCt {
    this.op('multiplyNoRelin', a.level);
    return this.ct(a.level, a.scale * b.scale, 3);
  }
  relinearizeInPlace(c: DryCt): void {
    this.op('relinearize', c.level);
  }
  encode(_v: Float64Array, scale: number, level: number): DryCt {
    this.op('encode', level);
    return this.pt(level, scale, this.topLevel);
  }
  encodeConst(_v: number, scale: number, level: number): DryCt {
    return this.pt(level, scale);
  }
  freePlain(p: DryCt): void {
    this.release(p.bytes ?? plaintextMemory(this.N, p.level));
    this.plainLive -= plaintextMemory(this.N, p.level);
  }
  mulPlain(c: DryCt, p: DryCt): DryCt {
    this.op('mulPlain', c.level);
    return this.ct(c.level, c.scale * p.scale);
  }
  mulPlainAddInPlace(_acc: DryCt, c: DryCt): void {
    this.op('mulPlain', c.level);
    this.op('add', c.level);
  }
  addPlainInPlace(c: DryCt): void {
    this.op('add', c.level);
  }
  addVecInPlace(c: DryCt): void {
    // encodes the vector, then adds it
    this.op('encode', c.level);
    this.op('add', c.level);
  }
  multiply(a: DryCt, b: DryCt): DryCt {
    this.op('multiply', a.level);
    return this.ct(a.level, a.scale * b.scale, 3);
  }
  square(c: DryCt): DryCt {
    this.op('multiply', c.level);
    return this.ct(c.level, c.scale * c.scale, 3);
  }
  rescaleInPlace(c: DryCt): void {
    this.op('rescale', c.level);
    this.shrink(c, c.level - 1);
    c.scale /= this.prime(c.level);
    c.level--;
  }
  modSwitchInPlace(c: DryCt, level: number): void {
    if (level !== c.level) this.shrink(c, level);
    c.level = level;
  }
  rotate(c: DryCt): DryCt {
    this.op('rotate', c.level);
    return this.ct(c.level, c.scale);
  }
  encryptVec(_v: Float64Array, scale: number, level: number): DryCt {
    return this.ct(level, scale);
  }
  serialize(c: DryCt): Uint8Array {
    this.op('serialize', c.level);
    return Uint8Array.of(c.level);
  }
  deserialize(b: Uint8Array): DryCt {
    this.op('deserialize', b[0]);
    return this.ct(b[0], this.scale);
  }

  /** A fresh input ciphertext at the top level, as the client encrypts it. */
  input(): DryCt {
    this.op('encrypt', this.topLevel);
    this.op('deserialize', this.topLevel);
    return this.ct(this.topLevel, this.scale);
  }

  /** An output ciphertext sent back and decrypted by the client. */
  output(c: DryCt): void {
    this.op('serialize', c.level);
    this.op('decrypt', c.level);
  }
}

/** Bytes of a ciphertext in memory: two polynomials of N 64-bit words per remaining prime. */
export function ciphertextMemory(N: number, level: number): number {
  return 2 * N * (level + 1) * 8;
}

export function plaintextMemory(N: number, level: number): number {
  return N * (level + 1) * 8;
}

/** A dry backend and the OpCounts the workers' `counting` wrapper would report for it. */
export function dryBackend(params: HeParams): { be: CkksBackend<DryCt, DryCt>; dry: DryBackend; counts: OpCounts } {
  const dry = new DryBackend(params);
  const counts = zeroCounts();
  return { be: counting(dry, counts), dry, counts };
}
