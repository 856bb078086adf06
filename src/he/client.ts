import { CkksContext, loadSeal } from './seal.js';
import type { CipherText, CKKSEncoder, Decryptor, Encryptor, KeyGenerator, PlainText, SecretKey } from './seal.js';
import type { HeParams } from './params.js';
import { padTo } from './seal-backend.js';

/**
 * What the client hands the server: parameters and public material only, as bytes. This is
 * the whole interface between the two sides; `HEServer` accepts nothing else.
 */
export interface PublicBundle {
  params: HeParams;
  publicKey: Uint8Array;
  relinKeys: Uint8Array;
  /** null when the program needs no rotations (batch packing) */
  galoisKeys: Uint8Array | null;
  /** the rotation steps the Galois keys cover */
  rotationSteps: number[];
}

/**
 * The data owner: generates the keys, encrypts inputs and decrypts results. The only holder of
 * the secret key, which never leaves this object (no accessor returns it or its bytes).
 */
export class HEClient {
  #secretKey: SecretKey;
  #keygen: KeyGenerator;
  #encryptor: Encryptor;
  #decryptor: Decryptor;
  #encoder: CKKSEncoder;
  readonly scale: number;
  readonly slots: number;

  private constructor(
    readonly ctx: CkksContext,
    keygen: KeyGenerator,
  ) {
    const seal = ctx.seal;
    this.#keygen = keygen;
    this.#secretKey = keygen.secretKey();
    this.#encoder = seal.CKKSEncoder(ctx.context);
    const pk = keygen.createPublicKey();
    this.#encryptor = seal.Encryptor(ctx.context, pk, this.#secretKey);
    pk.delete();
    this.#decryptor = seal.Decryptor(ctx.context, this.#secretKey);
    this.scale = 2 ** ctx.params.scaleBits;
    this.slots = ctx.slots;
  }

  static async create(params: HeParams): Promise<HEClient> {
    const seal = await loadSeal();
    const ctx = CkksContext.create(seal, params);
    return new HEClient(ctx, seal.KeyGenerator(ctx.context));
  }

  /**
   * Public, relinearization and Galois keys as bytes. Relinearization and Galois keys are
   * produced in SEAL's seeded form (half the size); only the rotation steps the program uses
   * get a Galois key, because each key at N=16384 is megabytes.
   */
  publicBundle(rotationSteps: number[]): PublicBundle {
    const seal = this.ctx.seal;
    const pk = this.#keygen.createPublicKey();
    const publicKey = pk.saveArray();
    pk.delete();
    const rk = this.#keygen.createRelinKeysSerializable();
    const relinKeys = rk.saveArray();
    rk.delete();
    const steps = normalizeSteps(rotationSteps, this.slots);
    let galoisKeys: Uint8Array | null = null;
    if (steps.length) {
      const gk = this.#keygen.createGaloisKeysSerializable(Int32Array.from(steps));
      galoisKeys = gk.saveArray(seal.ComprModeType.zstd);
      gk.delete();
    }
    return { params: this.ctx.params, publicKey, relinKeys, galoisKeys, rotationSteps: steps };
  }

  /**
   * One ciphertext per slot vector, as bytes. Symmetric encryption with the secret key is
   * allowed here (the client owns it) and serializes in seeded form: half the upload.
   */
  encrypt(vectors: Float64Array[]): Uint8Array[] {
    const out: Uint8Array[] = [];
    for (const v of vectors) {
      const pt = this.#encoder.encode(v.length === this.slots ? v : padTo(v, this.slots), this.scale) as PlainText;
      const ser = this.#encryptor.encryptSymmetricSerializable(pt);
      out.push(ser.saveArray());
      ser.delete();
      pt.delete();
    }
    return out;
  }

  decrypt(bytes: Uint8Array): Float64Array {
    const seal = this.ctx.seal;
    const ct: CipherText = seal.CipherText();
    ct.loadArray(this.ctx.context, bytes);
    const pt = seal.PlainText();
    this.#decryptor.decrypt(ct, pt);
    const v = this.#encoder.decode(pt);
    pt.delete();
    ct.delete();
    return Float64Array.from(v);
  }

  /** Chain level and log2 scale of a ciphertext, for --trace. */
  describe(bytes: Uint8Array): { level: number; scaleBits: number } {
    const ct: CipherText = this.ctx.seal.CipherText();
    ct.loadArray(this.ctx.context, bytes);
    const r = { level: ct.coeffModulusSize - 1, scaleBits: Math.log2(ct.scale) };
    ct.delete();
    return r;
  }

  delete(): void {
    this.#encryptor.delete();
    this.#decryptor.delete();
    this.#encoder.delete();
    this.#secretKey.delete();
    this.#keygen.delete();
    this.ctx.delete();
  }
}

/** Rotation steps as SEAL expects them: distinct, non-zero, in [1, slots). */
/**
 * Bytes one process holds for Galois keys of `count` rotation steps: each key switches over
 * every data prime, and each part is a two-polynomial ciphertext over the whole chain.
 */
export function galoisKeyBytes(params: HeParams, count: number): number {
  const primes = params.coeffModulusBits.length;
  return count * (primes - 1) * 2 * primes * params.polyModulusDegree * 8;
}

/** Galois keys beyond this abort SEAL (measured: 29 keys, 1.5 GiB, at N=16384 ran its wasm heap out while serializing). */
export const GALOIS_KEY_BUDGET = 0.75 * 2 ** 30;

export function normalizeSteps(steps: number[], slots: number): number[] {
  const set = new Set<number>();
  for (const s of steps) {
    const n = ((s % slots) + slots) % slots;
    if (n !== 0) set.add(n);
  }
  return [...set].sort((a, b) => a - b);
}
