import { createCipheriv, createHash } from 'node:crypto';
import { ringAddInto, ringSubInto } from './fixed-point.js';
import type { PartyIdentity } from './identity.js';

/**
 * Pairwise additive masks (Bonawitz et al. 2017, without the double-masking of dropouts: a
 * round that loses a party is redone without it). Party i adds PRG(s_ij) for every peer j > i
 * and subtracts it for j < i, so the masks cancel in the sum over the participants and each
 * single contribution is uniform over Z_2^32 to anyone without s_ij. The seed s_ij comes from
 * the X25519 agreement; AES-256-CTR over zeros is the PRG, its IV names the aggregation.
 */
export function maskStream(key: Uint8Array, aggregation: string, length: number): Uint32Array {
  // one AES key per (pair, aggregation): the counter starts at zero for every aggregation
  const roundKey = createHash('sha256').update(key).update(`mask:${aggregation}`).digest();
  const cipher = createCipheriv('aes-256-ctr', roundKey, Buffer.alloc(16));
  const bytes = cipher.update(Buffer.alloc(length * 4));
  return new Uint32Array(bytes.buffer, bytes.byteOffset, length).slice();
}

export interface Peer {
  name: string;
  publicKey: Uint8Array;
}

/** Adds this party's masks for the participants of one aggregation to `values`, in place. */
export function applyPairwiseMasks(values: Uint32Array, me: string, identity: PartyIdentity, participants: Peer[], aggregation: string): void {
  for (const peer of participants) {
    if (peer.name === me) continue;
    const stream = maskStream(identity.sharedKey(peer.publicKey, 'mask'), aggregation, values.length);
    if (me < peer.name) ringAddInto(values, stream);
    else ringSubInto(values, stream);
  }
}
