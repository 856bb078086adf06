import { CkksContext, loadSeal, type CKKSEncoder, type Decryptor, type Encryptor, type Evaluator, type GaloisKeys, type PublicKey } from '../../he/seal.js';
import type { HeParams } from '../../he/params.js';
import { SecureRandom } from '../secure-random.js';

/**
 * The backward pass of the split network across party lines: a bank needs the gradient of its
 * bottom layer, X_b^T dZ (f x h), but dZ (B x h, the label holder's gradient at the cut) is a
 * function of the labels. The label holder encrypts dZ under its own CKKS key in a block
 * layout (row i of the batch in block i of P = nextpow2(f*h) slots, dZ[i, j] repeated at
 * a*h + j for every feature a); the bank multiplies by its plaintext X in the same layout,
 * sums the blocks by log2(slots / P) rotations, adds a uniform mask R to every slot and sends
 * Enc(X^T dZ + R) back; the label holder decrypts, adds its DP noise to the f*h gradient slots
 * and returns only those; the bank subtracts R. Neither side sees the other's inputs: the bank
 * sees ciphertexts and its own (noised) gradient, the label holder sees X^T dZ + R.
 */
export function gradientParams(): HeParams {
  return { polyModulusDegree: 8192, coeffModulusBits: [60, 40, 40, 60], scaleBits: 40 };
}

/** Uniform mask half-width: hides |X^T dZ| <= 2^12 with statistical distance about 2^-18 per slot. */
export const MASK_BOUND = 2 ** 30;

export function blockSize(features: number, hidden: number): number {
  let p = 1;
  while (p < features * hidden) p *= 2;
  return p;
}

export function rotationSteps(block: number, slots: number): number[] {
  const steps: number[] = [];
  for (let s = block; s < slots; s *= 2) steps.push(s);
  return steps;
}

/** The label holder's side: owns the secret key; encrypts dZ, decrypts the masked products. */
export class GradientKeyHolder {
  readonly #encryptor: Encryptor;
  readonly #decryptor: Decryptor;
  readonly #encoder: CKKSEncoder;
  readonly publicKey: Uint8Array;
  readonly galoisKeys: Uint8Array;

  private constructor(readonly ctx: CkksContext, blocks: number[]) {
    const seal = ctx.seal;
    const keygen = seal.KeyGenerator(ctx.context);
    const sk = keygen.secretKey();
    const pk = keygen.createPublicKey();
    this.publicKey = pk.saveArray();
    const steps = [...new Set(blocks.flatMap((b) => rotationSteps(b, ctx.slots)))];
    const gk = keygen.createGaloisKeysSerializable(Int32Array.from(steps));
    this.galoisKeys = gk.saveArray(seal.ComprModeType.zstd);
    gk.delete();
    this.#encryptor = seal.Encryptor(ctx.context, pk);
    this.#decryptor = seal.Decryptor(ctx.context, sk);
    this.#encoder = seal.CKKSEncoder(ctx.context);
    pk.delete();
    keygen.delete();
  }

  static async create(blocks: number[]): Promise<GradientKeyHolder> {
    return new GradientKeyHolder(CkksContext.create(await loadSeal(), gradientParams()), blocks);
  }

  /** dZ (rows x hidden, row-major) in the block layout of a bank with `features` columns. */
  encryptCutGradient(dz: Float64Array, rows: number, hidden: number, features: number): Uint8Array[] {
    const P = blockSize(features, hidden);
    const perCt = this.ctx.slots / P;
    const out: Uint8Array[] = [];
    for (let first = 0; first < rows; first += perCt) {
      const slots = new Float64Array(this.ctx.slots);
      for (let r = 0; r < perCt && first + r < rows; r++) {
        for (let a = 0; a < features; a++) for (let j = 0; j < hidden; j++) slots[r * P + a * hidden + j] = dz[(first + r) * hidden + j];
      }
      const pt = this.ctx.seal.PlainText();
      const ct = this.ctx.seal.CipherText();
      this.#encoder.encode(slots, 2 ** 40, pt);
      this.#encryptor.encrypt(pt, ct);
      out.push(ct.saveArray());
      pt.delete();
      ct.delete();
    }
    return out;
  }

  /** The first `count` slots of a masked product. */
  decryptMasked(bytes: Uint8Array, count: number): Float64Array {
    const ct = this.ctx.seal.CipherText();
    ct.loadArray(this.ctx.context, bytes);
    const pt = this.ctx.seal.PlainText();
    this.#decryptor.decrypt(ct, pt);
    const v = (this.#encoder.decode(pt) as Float64Array).slice(0, count);
    ct.delete();
    pt.delete();
    return v;
  }
}

/** A bank's side: public key and Galois keys only. */
export class GradientEvaluator {
  private readonly evaluator: Evaluator;
  private readonly encoder: CKKSEncoder;
  private readonly galois: GaloisKeys;
  private readonly publicKey: PublicKey;
  private readonly random = new SecureRandom();

  private constructor(readonly ctx: CkksContext, publicKey: Uint8Array, galoisKeys: Uint8Array) {
    const seal = ctx.seal;
    this.evaluator = seal.Evaluator(ctx.context);
    this.encoder = seal.CKKSEncoder(ctx.context);
    this.publicKey = seal.PublicKey();
    this.publicKey.loadArray(ctx.context, publicKey);
    this.galois = seal.GaloisKeys();
    this.galois.loadArray(ctx.context, galoisKeys);
  }

  static async create(publicKey: Uint8Array, galoisKeys: Uint8Array): Promise<GradientEvaluator> {
    return new GradientEvaluator(CkksContext.create(await loadSeal(), gradientParams()), publicKey, galoisKeys);
  }

  /**
   * Enc(X^T dZ + R) from Enc(dZ) (block layout) and the bank's rows X (rows x features). Returns
   * the ciphertext and R's first features*hidden values, which the bank keeps to unmask.
   */
  maskedProduct(encDz: Uint8Array[], x: Float64Array, rows: number, features: number, hidden: number): { ciphertext: Uint8Array; mask: Float64Array } {
    const seal = this.ctx.seal;
    const slots = this.ctx.slots;
    const P = blockSize(features, hidden);
    const perCt = slots / P;
    let acc: ReturnType<typeof seal.CipherText> | null = null;
    encDz.forEach((bytes, c) => {
      const ct = seal.CipherText();
      ct.loadArray(this.ctx.context, bytes);
      const xs = new Float64Array(slots);
      for (let r = 0; r < perCt && c * perCt + r < rows; r++) {
        const i = c * perCt + r;
        for (let a = 0; a < features; a++) for (let j = 0; j < hidden; j++) xs[r * P + a * hidden + j] = x[i * features + a];
      }
      const pt = seal.PlainText();
      this.encoder.encode(xs, 2 ** 40, pt);
      this.evaluator.multiplyPlain(ct, pt, ct);
      this.evaluator.rescaleToNext(ct, ct);
      pt.delete();
      if (acc) {
        this.evaluator.add(acc, ct, acc);
        ct.delete();
      } else acc = ct;
    });
    const sum = acc!;
    for (const s of rotationSteps(P, slots)) {
      const rot = seal.CipherText();
      this.evaluator.rotateVector(sum, s, this.galois, rot);
      this.evaluator.add(sum, rot, sum);
      rot.delete();
    }
    // every slot is masked: the slots past f*h hold partial sums over subsets of rows
    const mask = Float64Array.from({ length: slots }, () => (2 * this.random.uniform() - 1) * MASK_BOUND);
    const mpt = seal.PlainText();
    this.encoder.encode(mask, sum.scale, mpt);
    this.evaluator.plainModSwitchTo(mpt, sum.parmsId, mpt);
    this.evaluator.addPlain(sum, mpt, sum);
    const bytes = sum.saveArray();
    sum.delete();
    mpt.delete();
    return { ciphertext: bytes, mask: mask.slice(0, features * hidden) };
  }
}
