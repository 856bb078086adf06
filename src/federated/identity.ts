import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { x25519 } from '@noble/curves/ed25519.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { HepolyError } from '../util/errors.js';

/**
 * A party's X25519 identity for one federated run: pairwise shared secrets for the mask seeds
 * and for sealed envelopes (the CKKS secret key, the PSI salt). The private key never leaves
 * this object; only `publicKey` goes on the wire.
 */
export class PartyIdentity {
  readonly #secret: Uint8Array;
  readonly publicKey: Uint8Array;

  constructor(secret: Uint8Array = x25519.utils.randomSecretKey()) {
    this.#secret = secret;
    this.publicKey = x25519.getPublicKey(secret);
  }

  /** A 32-byte key for (this party, peer, purpose), the same on both sides. */
  sharedKey(peerPublic: Uint8Array, purpose: string): Uint8Array {
    const shared = x25519.getSharedSecret(this.#secret, peerPublic);
    // both sides list the two public keys in the same (sorted) order
    const [a, b] = [this.publicKey, peerPublic].sort((p, q) => Buffer.compare(Buffer.from(p), Buffer.from(q)));
    const info = new TextEncoder().encode(`hepoly-federated:${purpose}`);
    return hkdf(sha256, shared, Buffer.concat([a, b]), info, 32);
  }

  /** AES-256-GCM under the pairwise key: nonce (12) | tag (16) | ciphertext. */
  seal(peerPublic: Uint8Array, purpose: string, plain: Uint8Array): Uint8Array {
    const nonce = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.sharedKey(peerPublic, purpose), nonce);
    cipher.setAAD(Buffer.from(purpose));
    const body = Buffer.concat([cipher.update(plain), cipher.final()]);
    return new Uint8Array(Buffer.concat([nonce, cipher.getAuthTag(), body]));
  }

  open(peerPublic: Uint8Array, purpose: string, sealed: Uint8Array): Uint8Array {
    const buf = Buffer.from(sealed);
    const decipher = createDecipheriv('aes-256-gcm', this.sharedKey(peerPublic, purpose), buf.subarray(0, 12));
    decipher.setAAD(Buffer.from(purpose));
    decipher.setAuthTag(buf.subarray(12, 28));
    try {
      return new Uint8Array(Buffer.concat([decipher.update(buf.subarray(28)), decipher.final()]));
    } catch (e) {
      throw new HepolyError(`a sealed ${purpose} envelope failed authentication (tampered with, or sealed for another party). Restart the run: every party makes new keys`, { cause: e });
    }
  }
}
