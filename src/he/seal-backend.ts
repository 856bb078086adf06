import type { CkksBackend } from './backend.js';
import { ProductSums, type ScalarSums } from './scalar-sums.js';
import { checkLayout } from './residue-arena.js';
import { SealScalarSums } from './seal-scalar-sums.js';
import { SealPairSums } from './seal-pair-sums.js';
import type { PairSums } from './pair-sums.js';
import type { PlainSums, ResiduePlain } from './plain-sums.js';
import { SealPlainSums } from './seal-plain-sums.js';
import { ResidueKernels } from './residue-kernels.js';
import type { CipherText, CkksContext, CKKSEncoder, Encryptor, Evaluator, GaloisKeys, PlainText, PublicKey, RelinKeys } from './seal.js';

/** Keys the server may hold: all public. There is deliberately no secret-key field. */
export interface EvaluationKeys {
  publicKey: PublicKey;
  relinKeys: RelinKeys;
  galoisKeys: GaloisKeys | null;
}

/**
 * Scale tags that differ only in their last bits (two products computed in a different
 * order) are the same scale; anything further apart is a scheduling bug.
 */
const SCALE_TOLERANCE = 1e-9;

/** SEAL 4.1 plaintext serialization, uncompressed: where the residues start (limb-major, N per limb). */
const PLAIN_DATA_OFFSET = 88;

/**
 * CKKS on real SEAL ciphertexts. Constants (batch packing multiplies by one scalar weight per
 * ciphertext) are built directly as SEAL plaintexts: a constant slot vector is the constant
 * polynomial, whose NTT form is the same residue in every coefficient, so the serialized
 * plaintext can be written without the FFT and NTT that `encode` would spend on it.
 */
export class SealBackend implements CkksBackend<CipherText, PlainText> {
  readonly slots: number;
  readonly topLevel: number;
  readonly scale: number;
  private readonly ev: Evaluator;
  private readonly encoder: CKKSEncoder;
  private readonly encryptor: Encryptor;
  private readonly constTemplates: Uint8Array[] = [];
  private readonly constPlains: PlainText[] = [];
  private readonly sumTemplates: Uint8Array[] = [];
  private readonly productTemplates: Uint8Array[] = [];

  constructor(
    readonly ctx: CkksContext,
    private readonly keys: EvaluationKeys,
  ) {
    const seal = ctx.seal;
    this.slots = ctx.slots;
    this.topLevel = ctx.topLevel;
    this.scale = 2 ** ctx.params.scaleBits;
    this.ev = seal.Evaluator(ctx.context);
    this.encoder = seal.CKKSEncoder(ctx.context);
    this.encryptor = seal.Encryptor(ctx.context, keys.publicKey);
  }

  prime(level: number): number {
    return this.ctx.prime(level);
  }

  levelOf(c: CipherText): number {
    // data primes q0..q_level: cheaper than looking the parms id up (no wasm wrappers)
    return c.coeffModulusSize - 1;
  }

  scaleOf(c: CipherText): number {
    return c.scale;
  }

  setScale(c: CipherText, scale: number): void {
    c.setScale(scale);
  }

  free(c: CipherText): void {
    c.delete();
  }

  clone(c: CipherText): CipherText {
    return c.clone();
  }

  private fresh(): CipherText {
    return this.ctx.seal.CipherText();
  }

  private align(a: CipherText, b: CipherText): void {
    const sa = a.scale;
    const sb = b.scale;
    if (sa !== sb) {
      if (Math.abs(sa - sb) > SCALE_TOLERANCE * Math.max(sa, sb)) {
        throw new Error(`internal: adding ciphertexts with scales 2^${Math.log2(sa).toFixed(3)} and 2^${Math.log2(sb).toFixed(3)}`);
      }
      b.setScale(sa);
    }
  }

  add(a: CipherText, b: CipherText): CipherText {
    this.align(a, b);
    const out = this.fresh();
    this.ev.add(a, b, out);
    return out;
  }

  addInPlace(acc: CipherText, b: CipherText): void {
    this.align(acc, b);
    this.ev.add(acc, b, acc);
  }

  negateInPlace(c: CipherText): void {
    this.ev.negate(c, c);
  }

  subInPlace(acc: CipherText, b: CipherText): void {
    this.align(acc, b);
    this.ev.sub(acc, b, acc);
  }

  /** A reusable plaintext holding `value * scale` in every slot, at `level`. */
  private constPlain(value: number, scale: number, level: number, into?: PlainText): PlainText {
    let template = this.constTemplates[level];
    if (!template) {
      // a real plaintext at this level gives the exact header and parms id bytes
      const pt = this.encode(new Float64Array(1), this.scale, level);
      template = pt.saveArray(this.ctx.seal.ComprModeType.none);
      pt.delete();
      this.constTemplates[level] = template;
      this.constPlains[level] = this.ctx.seal.PlainText();
    }
    const scaled = Math.round(value * scale);
    const { primes, modulusBits } = this.ctx.levels[level];
    // value*scale may exceed 64 bits (an accumulator at scale*q before its rescale): exact as a
    // BigInt, it only has to stay below half the level's modulus to decode
    const bound = Math.log2(Math.abs(scaled)) + 1;
    if (!Number.isFinite(scaled) || bound >= modulusBits) {
      throw new Error(`internal: constant ${value} at scale 2^${Math.log2(scale).toFixed(1)} does not fit a plaintext at level ${level} (${modulusBits.toFixed(0)} bits)`);
    }
    const view = new DataView(template.buffer, template.byteOffset, template.byteLength);
    view.setFloat64(56, scale, true);
    const N = this.ctx.params.polyModulusDegree;
    const data = new BigUint64Array(template.buffer, template.byteOffset + 88, N * (level + 1));
    const big = BigInt(scaled);
    for (let j = 0; j <= level; j++) {
      const q = primes[j];
      const r = ((big % q) + q) % q;
      data.fill(r, j * N, (j + 1) * N);
    }
    const plain = into ?? this.constPlains[level];
    plain.loadArray(this.ctx.context, template);
    return plain;
  }

  mulConst(c: CipherText, value: number, ptScale: number): CipherText {
    if (Math.round(value * ptScale) === 0) return this.zeroProduct(c, ptScale);
    const out = this.fresh();
    this.ev.multiplyPlain(c, this.constPlain(value, ptScale, this.levelOf(c)), out);
    return out;
  }

  mulConstAddInPlace(acc: CipherText, c: CipherText, value: number, ptScale: number): void {
    if (Math.round(value * ptScale) === 0) return;
    const t = this.mulConst(c, value, ptScale);
    this.addInPlace(acc, t);
    t.delete();
  }

  /** `budget`: bytes of input residues held before a partial sum (tests make it small) */
  scalarSums(level: number, budget?: number): ScalarSums<CipherText> | null {
    if (!SealScalarSums.supports(this.ctx, level)) return null;
    const template = this.layoutTemplate(this.sumTemplates, level, 2);
    return new SealScalarSums(this.ctx, level, template, () => new ProductSums(this, level), SCALE_TOLERANCE, budget);
  }

  /** kernel memory the plaintext sums reuse step after step (a fresh wasm memory per step would zero new pages each time) */
  private plainKernels: ResidueKernels | null = null;

  /** One open at a time: they share one kernel memory. `budget`: bytes of input residues held at once (tests make it small). */
  plainSums(level: number, budget?: number): PlainSums<CipherText> | null {
    if (!SealPlainSums.supports(this.ctx, level)) return null;
    this.plainKernels ??= new ResidueKernels();
    return new SealPlainSums(this.ctx, level, this.layoutTemplate(this.sumTemplates, level, 2), SCALE_TOLERANCE, (scale) => this.encryptVec(new Float64Array(1), scale, level), this.plainKernels, budget);
  }

  /** The plaintext as residues in JS memory (SEAL's encoding, its SEAL object freed); null where the level's primes do not fit the kernel. */
  encodeResidues(values: Float64Array, scale: number, level: number): ResiduePlain | null {
    if (!SealPlainSums.supports(this.ctx, level)) return null;
    const pt = this.encode(values, scale, level);
    const n = this.ctx.params.polyModulusDegree * (level + 1);
    const bytes = pt.saveArray(this.ctx.seal.ComprModeType.none);
    const zero = pt.isZero;
    const ptScale = pt.scale;
    pt.delete();
    if (bytes.length !== PLAIN_DATA_OFFSET + 8 * n) throw new Error(`internal: SEAL's plaintext serialization is not the layout seal-backend.ts expects (${bytes.length} bytes, expected ${PLAIN_DATA_OFFSET + 8 * n})`);
    // residues are below 2^48 (the kernel's limit): the low 32-bit word of each, and the high one where the prime is wider
    const start = bytes.byteOffset + PLAIN_DATA_OFFSET;
    const words = start % 4 ? new Uint32Array(bytes.slice(PLAIN_DATA_OFFSET).buffer) : new Uint32Array(bytes.buffer, start, 2 * n);
    const N = this.ctx.params.polyModulusDegree;
    const limbs = this.ctx.levels[level].primes.map((q, j) => {
      const narrow = Number(q) < 2 ** 32;
      const limb = narrow ? new Uint32Array(N) : new Float64Array(N);
      for (let i = 0, k = 2 * j * N; i < N; i++, k += 2) limb[i] = narrow ? words[k] : words[k] + words[k + 1] * 2 ** 32;
      return limb;
    });
    return { level, scale: ptScale, limbs, bytes: limbs.reduce((a, l) => a + l.byteLength, 0), zero };
  }

  pairSums(level: number, budget?: number): PairSums<CipherText> | null {
    if (!SealPairSums.supports(this.ctx, level)) return null;
    return new SealPairSums(this.ctx, level, this.layoutTemplate(this.productTemplates, level, 3), SCALE_TOLERANCE, budget);
  }

  /** A serialized ciphertext of `size` polynomials at `level` whose header the residue sums write their outputs into (made once per level). */
  private layoutTemplate(cache: Uint8Array[], level: number, size: 2 | 3): Uint8Array {
    if (cache[level]) return cache[level];
    const a = this.encryptVec(new Float64Array(1), this.scale, level);
    const c = size === 3 ? this.multiplyNoRelin(a, a) : a;
    const template = this.serialize(c);
    checkLayout(template, c, this.ctx.params.polyModulusDegree);
    if (c !== a) c.delete();
    a.delete();
    cache[level] = template;
    return template;
  }

  /**
   * The product with a plaintext that encodes to all zeros (a weight below the scale's
   * resolution): SEAL refuses it ('result ciphertext is transparent'), and its value is an
   * encryption of zeros at the product's level and scale, which the public key gives.
   */
  private zeroProduct(c: CipherText, ptScale: number): CipherText {
    return this.encryptVec(new Float64Array(1), c.scale * ptScale, this.levelOf(c));
  }

  addConstInPlace(c: CipherText, value: number): void {
    this.ev.addPlain(c, this.constPlain(value, c.scale, this.levelOf(c)), c);
  }

  encode(values: Float64Array, scale: number, level: number): PlainText {
    const full = values.length === this.slots ? values : padTo(values, this.slots);
    const pt = this.encoder.encode(full, scale) as PlainText;
    if (level < this.topLevel) this.ev.plainModSwitchTo(pt, this.ctx.levels[level].parmsId, pt);
    return pt;
  }

  encodeConst(value: number, scale: number, level: number): PlainText {
    return this.constPlain(value, scale, level, this.ctx.seal.PlainText());
  }

  freePlain(p: PlainText): void {
    p.delete();
  }

  mulPlain(c: CipherText, p: PlainText): CipherText {
    if (p.isZero) return this.zeroProduct(c, p.scale);
    const out = this.fresh();
    this.ev.multiplyPlain(c, p, out);
    return out;
  }

  mulPlainAddInPlace(acc: CipherText, c: CipherText, p: PlainText): void {
    if (p.isZero) return;
    const t = this.mulPlain(c, p);
    this.addInPlace(acc, t);
    t.delete();
  }

  addPlainInPlace(c: CipherText, p: PlainText): void {
    if (p.scale !== c.scale) p.setScale(c.scale);
    this.ev.addPlain(c, p, c);
  }

  addVecInPlace(c: CipherText, values: Float64Array): void {
    const p = this.encode(values, c.scale, this.levelOf(c));
    this.ev.addPlain(c, p, c);
    p.delete();
  }

  multiply(a: CipherText, b: CipherText): CipherText {
    const out = this.fresh();
    this.ev.multiply(a, b, out);
    this.ev.relinearize(out, this.keys.relinKeys, out);
    return out;
  }

  /** a*b left as three polynomials: sums of products relinearize once (see HeOps.dot) */
  multiplyNoRelin(a: CipherText, b: CipherText): CipherText {
    const out = this.fresh();
    this.ev.multiply(a, b, out);
    return out;
  }

  relinearizeInPlace(c: CipherText): void {
    this.ev.relinearize(c, this.keys.relinKeys, c);
  }

  square(c: CipherText): CipherText {
    const out = this.fresh();
    this.ev.square(c, out);
    this.ev.relinearize(out, this.keys.relinKeys, out);
    return out;
  }

  rescaleInPlace(c: CipherText): void {
    this.ev.rescaleToNext(c, c);
  }

  modSwitchInPlace(c: CipherText, level: number): void {
    if (this.levelOf(c) !== level) this.ev.cipherModSwitchTo(c, this.ctx.levels[level].parmsId, c);
  }

  rotate(c: CipherText, steps: number): CipherText {
    if (!this.keys.galoisKeys) throw new Error('internal: rotation without Galois keys');
    const s = ((steps % this.slots) + this.slots) % this.slots;
    const out = this.fresh();
    this.ev.rotateVector(c, s, this.keys.galoisKeys, out);
    return out;
  }

  encryptVec(values: Float64Array, scale: number, level: number): CipherText {
    const p = this.encode(values, scale, level);
    const out = this.fresh();
    this.encryptor.encrypt(p, out);
    p.delete();
    return out;
  }

  serialize(c: CipherText): Uint8Array {
    return c.saveArray(this.ctx.seal.ComprModeType.none);
  }

  deserialize(bytes: Uint8Array): CipherText {
    const c = this.fresh();
    c.loadArray(this.ctx.context, bytes);
    return c;
  }

  delete(): void {
    this.ev.delete();
    this.encoder.delete();
    this.encryptor.delete();
    for (const p of this.constPlains) p?.delete();
  }
}

export function padTo(values: Float64Array, n: number): Float64Array {
  const out = new Float64Array(n);
  out.set(values.length > n ? values.subarray(0, n) : values);
  return out;
}
