import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { HepolyError } from '../util/errors.js';
import { shardTag } from './job.js';

/**
 * Redis keys of a queued run. Large, shared values (the server artifact, the evaluation keys)
 * are stored once under their content hash, so a run uploads them once and a worker fetches
 * each once; per-shard inputs and results live under (run, session, shard).
 */

const PREFIX = 'hepoly';
/** blobs outlive a run so a resumed or repeated run does not upload them again */
const BLOB_TTL_S = 7 * 24 * 3600;

/**
 * A run's per-shard keys expire after this even when no client cleans up (a client killed
 * with -9): its inputs, results and done list do not pile up in a noeviction Redis.
 */
export const RUN_TTL_S = 2 * 24 * 3600;

export function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export const keys = {
  blob: (hash: string) => `${PREFIX}:blob:${hash}`,
  input: (run: string, session: string, shard: number, segment = 0) => `${PREFIX}:run:${run}:${session}:in:${shardTag(shard, segment)}`,
  output: (run: string, session: string, shard: number, segment = 0) => `${PREFIX}:run:${run}:${session}:out:${shardTag(shard, segment)}`,
  /** shard tags (`K`, or `K.J` for segment J), pushed by workers as results land: the client waits on it (BLPOP) */
  done: (run: string, session: string) => `${PREFIX}:run:${run}:${session}:done`,
};

/** Stores `bytes` under its hash unless it is there already; returns the hash. */
export async function putBlob(r: Redis, bytes: Uint8Array): Promise<string> {
  const hash = sha256(bytes);
  const set = await r.set(keys.blob(hash), Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), 'EX', BLOB_TTL_S, 'NX');
  if (set === null) await r.expire(keys.blob(hash), BLOB_TTL_S);
  return hash;
}

export async function getBlob(r: Redis, hash: string, what: string): Promise<Uint8Array> {
  const b = await r.getBuffer(keys.blob(hash));
  if (!b) throw new HepolyError(`queue: the ${what} ${hash.slice(0, 12)} is not in Redis (expired or deleted); run he-validate again to upload it`);
  const bytes = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  if (sha256(bytes) !== hash) throw new HepolyError(`queue: the ${what} stored under ${hash.slice(0, 12)} does not hash to it (Redis data changed); run he-validate again`);
  return bytes;
}
