import { CkksContext, loadSeal, type CipherText, type CKKSEncoder, type Decryptor, type Encryptor, type SecretKey } from '../he/seal.js';
import type { HeParams } from '../he/params.js';
import { reduceRing } from './fixed-point.js';

/**
 * CKKS for secure aggregation: ring elements (integers < 2^32) are encoded as reals at scale
 * 2^24 in a single 60-bit data prime, so a sum of up to 2^12 contributions (< 2^44) stays exact
 * after rounding (the decryption error is about 1e-3, far below 0.5). Aggregation needs only
 * additions: no relinearization or Galois keys, and the coordinator holds no key at all.
 */
export function aggregationParams(polyModulusDegree: number): HeParams {
  // the last prime is SEAL's key-switching prime; the data lives in the first
  return { polyModulusDegree, coeffModulusBits: polyModulusDegree >= 8192 ? [60, 60] : [60, 40], scaleBits: 24 };
}

/** What a party holds once the key ceremony is over: the shared CKKS secret key and its encryptor. */
export class AggregationCrypto {
  readonly #secretKey: SecretKey;
  readonly #encryptor: Encryptor;
  readonly #decryptor: Decryptor;
  readonly #encoder: CKKSEncoder;

  private constructor(
    readonly ctx: CkksContext,
    secretKey: SecretKey,
  ) {
    const seal = ctx.seal;
    this.#secretKey = secretKey;
    this.#encoder = seal.CKKSEncoder(ctx.context);
    const keygen = seal.KeyGenerator(ctx.context, secretKey);
    const pk = keygen.createPublicKey();
    this.#encryptor = seal.Encryptor(ctx.context, pk);
    pk.delete();
    keygen.delete();
    this.#decryptor = seal.Decryptor(ctx.context, secretKey);
  }

  /** The key holder: a fresh secret key. */
  static async generate(polyModulusDegree: number): Promise<AggregationCrypto> {
    const ctx = CkksContext.create(await loadSeal(), aggregationParams(polyModulusDegree));
    const keygen = ctx.seal.KeyGenerator(ctx.context);
    const sk = keygen.secretKey();
    keygen.delete();
    return new AggregationCrypto(ctx, sk);
  }

  /** Another party: the secret key received (sealed) from the key holder. */
  static async fromSecretKey(polyModulusDegree: number, bytes: Uint8Array): Promise<AggregationCrypto> {
    const ctx = CkksContext.create(await loadSeal(), aggregationParams(polyModulusDegree));
    const sk = ctx.seal.SecretKey();
    sk.loadArray(ctx.context, bytes);
    return new AggregationCrypto(ctx, sk);
  }

  /** The secret key's bytes, only to be sealed for a peer inside the key ceremony. */
  secretKeyBytesForCeremony(): Uint8Array {
    return this.#secretKey.saveArray();
  }

  get slots(): number {
    return this.ctx.slots;
  }

  /** Ring elements -> one ciphertext per `slots` values. */
  encrypt(values: Uint32Array): Uint8Array[] {
    const seal = this.ctx.seal;
    const out: Uint8Array[] = [];
    for (let off = 0; off < values.length; off += this.slots) {
      const chunk = Float64Array.from(values.subarray(off, off + this.slots));
      const pt = seal.PlainText();
      const ct = seal.CipherText();
      this.#encoder.encode(chunk, 2 ** 24, pt);
      this.#encryptor.encrypt(pt, ct);
      out.push(ct.saveArray());
      pt.delete();
      ct.delete();
    }
    return out;
  }

  /** Decrypts a sum of ring elements, rounds, and reduces it mod 2^32. */
  decrypt(blobs: Uint8Array[], length: number): Uint32Array {
    const seal = this.ctx.seal;
    const out = new Uint32Array(length);
    blobs.forEach((bytes, k) => {
      const ct = seal.CipherText();
      ct.loadArray(this.ctx.context, bytes);
      const pt = seal.PlainText();
      this.#decryptor.decrypt(ct, pt);
      const decoded = this.#encoder.decode(pt) as Float64Array;
      const off = k * this.slots;
      out.set(reduceRing(decoded.subarray(0, Math.min(this.slots, length - off))), off);
      ct.delete();
      pt.delete();
    });
    return out;
  }
}

/** The coordinator's side: adds ciphertexts, chunk by chunk, with no key of any kind. */
export class CiphertextAdder {
  private constructor(readonly ctx: CkksContext) {}

  static async create(polyModulusDegree: number): Promise<CiphertextAdder> {
    return new CiphertextAdder(CkksContext.create(await loadSeal(), aggregationParams(polyModulusDegree)));
  }

  sum(contributions: Uint8Array[][]): Uint8Array[] {
    const seal = this.ctx.seal;
    const evaluator = seal.Evaluator(this.ctx.context);
    const chunks = contributions[0].length;
    const out: Uint8Array[] = [];
    for (let k = 0; k < chunks; k++) {
      const acc: CipherText = seal.CipherText();
      acc.loadArray(this.ctx.context, contributions[0][k]);
      for (const c of contributions.slice(1)) {
        const ct = seal.CipherText();
        ct.loadArray(this.ctx.context, c[k]);
        evaluator.add(acc, ct, acc);
        ct.delete();
      }
      out.push(acc.saveArray());
      acc.delete();
    }
    evaluator.delete();
    return out;
  }
}
