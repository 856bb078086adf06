import type { PublicBundle } from './client.js';
import type { HeParams } from './params.js';
import { SimBackend } from './sim-backend.js';

/** What the validation pipeline needs from a client; HEClient and SimClient both provide it. */
export interface ClientLike {
  readonly slots: number;
  publicBundle(rotationSteps: number[]): PublicBundle;
  encrypt(vectors: Float64Array[]): Uint8Array[];
  decrypt(bytes: Uint8Array): Float64Array;
  describe(bytes: Uint8Array): { level: number; scaleBits: number };
  delete(): void;
}

/**
 * The client of `--mode simulate`: "ciphertexts" are float64 slot vectors with CKKS-sized noise
 * and the real level/scale tags, so the server runs the identical schedule in seconds. There
 * are no keys; nothing here is secret.
 */
export class SimClient implements ClientLike {
  readonly slots: number;
  private be: SimBackend;

  constructor(readonly params: HeParams) {
    this.be = new SimBackend(params, { noise: true, seed: 7 });
    this.slots = this.be.slots;
  }

  publicBundle(rotationSteps: number[]): PublicBundle {
    return { params: this.params, publicKey: new Uint8Array(0), relinKeys: new Uint8Array(0), galoisKeys: null, rotationSteps };
  }

  encrypt(vectors: Float64Array[]): Uint8Array[] {
    return vectors.map((v) => this.be.serialize(this.be.encryptInput(v)));
  }

  decrypt(bytes: Uint8Array): Float64Array {
    return this.be.deserialize(bytes).v;
  }

  describe(bytes: Uint8Array): { level: number; scaleBits: number } {
    const c = this.be.deserialize(bytes);
    return { level: c.level, scaleBits: Math.log2(c.scale) };
  }

  delete(): void {}
}
