import { CkksContext, type Seal, loadSeal } from './seal.js';
import type { CipherText, KeyGenerator } from './seal.js';
import { CkksKeyHolder } from './key-holder.js';
import type { HeParams } from './params.js';
import { padTo } from './seal-backend.js';
import { normalizeSteps } from './key-sizes.js';
import { RefreshPool } from './refresh-pool.js';

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
 * the secret key, which never leaves this object (no accessor returns it or its bytes) but for
 * the client's own refresh threads (`refreshPool`). The
 * key and encode steps are the ones every client shares (key-holder.ts).
 */
export class HEClient {
  #keys: CkksKeyHolder;
  readonly scale: number;
  readonly slots: number;

  private constructor(
    readonly ctx: CkksContext,
    keygen: KeyGenerator,
  ) {
    this.#keys = new CkksKeyHolder(ctx.seal, ctx.context, keygen, 2 ** ctx.params.scaleBits);
    this.scale = this.#keys.scale;
    this.slots = ctx.slots;
  }

  /**
   * `seal`: a SEAL instance of the caller's (from `newSeal()`), for a client whose heap is
   * dropped with it; by default the thread's shared instance, whose heap only grows.
   */
  static async create(params: HeParams, seal?: Seal): Promise<HEClient> {
    seal ??= await loadSeal();
    const ctx = CkksContext.create(seal, params);
    return new HEClient(ctx, seal.KeyGenerator(ctx.context));
  }

  /** Public, relinearization and Galois keys as bytes (only the rotation steps the program uses get a Galois key). */
  publicBundle(rotationSteps: number[]): PublicBundle {
    const steps = normalizeSteps(rotationSteps, this.slots);
    return { params: this.ctx.params, ...this.#keys.publicKeys(steps), rotationSteps: steps };
  }

  /**
   * One ciphertext per slot vector, as bytes. Symmetric encryption with the secret key is
   * allowed here (the client owns it) and serializes in seeded form: half the upload.
   */
  encrypt(vectors: Float64Array[]): Uint8Array[] {
    return vectors.map((v) => this.#keys.encryptSlots(v.length === this.slots ? v : padTo(v, this.slots)));
  }

  decrypt(bytes: Uint8Array): Float64Array {
    return this.#keys.decryptSlots(bytes);
  }

  /**
   * `--refresh client` on `threads` of this client's own threads (src/he/refresh-pool.ts):
   * each gets a copy of the secret key, which stays in this process.
   */
  refreshPool(threads: number): RefreshPool {
    return RefreshPool.start(this.ctx.params, this.#keys.saveSecretKey(), threads);
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
    this.#keys.delete();
    this.ctx.delete();
  }
}

// key-size arithmetic, re-exported for the client side; the server side imports ./key-sizes.js, which holds no key code
export { galoisKeyBytes, GALOIS_KEY_BUDGET, normalizeSteps } from './key-sizes.js';
