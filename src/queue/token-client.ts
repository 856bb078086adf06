import type { PublicBundle } from '../he/client.js';
import type { ClientLike } from '../he/sim-client.js';

/**
 * The client as validate.ts sees it in a queued run. The queue decrypts each shard the moment
 * it arrives (so a resumed run can keep it); what it hands validate.ts in place of a result
 * ciphertext is a token standing for the decrypted vector, which `decrypt` resolves. Anything
 * else goes to the real client.
 */
export class TokenClient implements ClientLike {
  private readonly plain = new WeakMap<Uint8Array, Float64Array>();

  constructor(readonly inner: ClientLike) {}

  get slots(): number {
    return this.inner.slots;
  }

  /**
   * A token for an already decrypted vector: the ciphertext it came from (so byte counts stay
   * true), or an empty array for a shard read back from a --run-id state.
   */
  token(v: Float64Array, ciphertext: Uint8Array = new Uint8Array(0)): Uint8Array {
    this.plain.set(ciphertext, v);
    return ciphertext;
  }

  publicBundle(rotationSteps: number[]): PublicBundle {
    return this.inner.publicBundle(rotationSteps);
  }

  encrypt(vectors: Float64Array[]): Uint8Array[] {
    return this.inner.encrypt(vectors);
  }

  decrypt(bytes: Uint8Array): Float64Array {
    return this.plain.get(bytes) ?? this.inner.decrypt(bytes);
  }

  describe(bytes: Uint8Array): { level: number; scaleBits: number } {
    return this.inner.describe(bytes);
  }

  delete(): void {
    this.inner.delete();
  }
}
