import { HepolyError } from '../util/errors.js';
import { CoordinatorClient } from './client.js';
import { AggregationCrypto } from './ckks-aggregate.js';
import { PartyIdentity } from './identity.js';
import type { Peer } from './masks.js';
import type { SecureSumContext } from './secure-sum.js';

/**
 * Joining a run: a fresh X25519 identity, the roster from the coordinator (names, public keys
 * and what each party declared), and the CKKS key ceremony.
 */
export interface Session {
  me: string;
  client: CoordinatorClient;
  identity: PartyIdentity;
  peers: (Peer & { meta: Record<string, unknown> })[];
}

export async function joinRun(url: string, me: string, meta: Record<string, unknown>): Promise<Session> {
  const client = new CoordinatorClient(url, me);
  const identity = new PartyIdentity();
  await client.post('/join', { meta }, [identity.publicKey]);
  const roster = await client.poll('/roster', {});
  const parties = roster.header.parties as { name: string; meta: Record<string, unknown> }[];
  const peers = parties.map((p, i) => ({ name: p.name, meta: p.meta, publicKey: roster.blobs[i] }));
  return { me, client, identity, peers };
}

/**
 * The key ceremony. SEAL has no threshold decryption, so one party (the key holder) makes the
 * CKKS secret key and seals it for each other party with AES-256-GCM under their pairwise
 * X25519 key; the coordinator relays envelopes it cannot open. Every party ends with the same
 * secret key; the coordinator never sees it, nor any key at all.
 */
export async function keyCeremony(s: Session, holder: string, polyModulusDegree: number): Promise<AggregationCrypto> {
  const holderPeer = s.peers.find((p) => p.name === holder);
  if (!holderPeer) throw new HepolyError(`key ceremony: the key holder ${holder} is not in the roster`);
  if (s.me === holder) {
    const crypto = await AggregationCrypto.generate(polyModulusDegree);
    const sk = crypto.secretKeyBytesForCeremony();
    for (const p of s.peers) {
      if (p.name === s.me) continue;
      await s.client.post('/mail', { to: p.name, tag: 'ckks-secret-key' }, [s.identity.seal(p.publicKey, 'ckks-secret-key', sk)]);
    }
    return crypto;
  }
  const m = await s.client.poll('/mailbox', { tag: 'ckks-secret-key' });
  return AggregationCrypto.fromSecretKey(polyModulusDegree, s.identity.open(holderPeer.publicKey, 'ckks-secret-key', m.blobs[0]));
}

export function sumContext(s: Session, crypto: AggregationCrypto | null, masks: boolean): SecureSumContext {
  return { client: s.client, me: s.me, identity: s.identity, peers: s.peers, crypto, masks };
}

/** Tells the coordinator this party stopped on an error, so the others stop with its message. */
export async function reportFailure(s: Pick<Session, 'client'>, e: unknown): Promise<void> {
  const err = e instanceof HepolyError ? e : new HepolyError(String((e as Error)?.message ?? e));
  if (/stopped the run/.test(err.message)) return;
  await s.client.post('/fail', { error: err.message, exitCode: err.exitCode }).catch(() => undefined);
}

/**
 * A party whose own data is unusable tells the coordinator why without joining: the roster then
 * never completes, so every other party's wait ends on this message. (Joining first, with an
 * empty declaration, let a label holder take the roster and read columns the party never
 * declared: a crash instead of this party's message.)
 */
export async function refuseToJoin(url: string, me: string, e: unknown): Promise<void> {
  await reportFailure({ client: new CoordinatorClient(url, me) }, e);
}
