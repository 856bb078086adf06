import { Redis } from 'ioredis';
import { HepolyError } from '../util/errors.js';

/**
 * Where the queue lives: one Redis, named by a URL that also carries credentials and TLS
 * (redis://:PASSWORD@HOST:PORT, rediss://... for TLS), so nothing else needs configuring.
 */

/** BullMQ queue of shard jobs (children) and of run jobs (one parent per run) */
export const SHARD_QUEUE = 'hepoly-shards';
export const RUN_QUEUE = 'hepoly-runs';

export function checkQueueUrl(url: string): string {
  if (!/^rediss?:\/\/[^/\s]+/.test(url)) {
    throw new HepolyError(`--queue ${JSON.stringify(url)}: expected a Redis URL, redis://[:PASSWORD@]HOST:PORT (rediss:// for TLS)`, { exitCode: 2 });
  }
  return url;
}

/** The URL without its password, for messages and logs. */
export function redactUrl(url: string): string {
  return url.replace(/\/\/([^@/]*)@/, '//***@');
}

/**
 * A connection opened only after one PING answered: an unreachable Redis is a clear error at
 * start, not a silent retry loop. `role` 'worker': BullMQ's Worker requires
 * maxRetriesPerRequest null, and a long-running worker should wait for Redis to come back.
 * 'client': a lost Redis fails its requests after ~15 s of reconnecting (HEPOLY_REDIS_RETRY_SECONDS),
 * so he-validate ends with a message (and resumes with --run-id) instead of hanging.
 */
export async function connectRedis(url: string, role: 'worker' | 'client' = 'client'): Promise<Redis> {
  checkQueueUrl(url);
  const options = role === 'worker' ? { maxRetriesPerRequest: null } : clientRetries();
  const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 3000 });
  let lastError = '';
  probe.on('error', (e: Error) => (lastError = e.message));
  try {
    await probe.connect();
    await probe.ping();
    await checkEvictionPolicy(probe, url);
  } catch (e) {
    if (e instanceof HepolyError) throw e;
    throw new HepolyError(
      `--queue ${redactUrl(url)}: Redis does not answer (${lastError || (e as Error).message}). Start it (redis-server --maxmemory-policy noeviction) or fix the URL: redis://[:PASSWORD@]HOST:PORT, rediss:// for TLS`,
    );
  } finally {
    probe.disconnect();
  }
  const conn = new Redis(url, options);
  conn.on('error', () => {
    // ioredis reconnects by itself; a request that cannot complete surfaces where it is awaited
  });
  return conn;
}

/** A client reconnects once a second for HEPOLY_REDIS_RETRY_SECONDS (default 15), then gives up. */
function clientRetries() {
  const raw = process.env.HEPOLY_REDIS_RETRY_SECONDS;
  const seconds = raw === undefined ? 15 : Number(raw);
  if (!Number.isInteger(seconds) || seconds < 1) throw new HepolyError(`HEPOLY_REDIS_RETRY_SECONDS: expected a whole number of seconds (1 or more), found ${JSON.stringify(raw)}`);
  return { maxRetriesPerRequest: 3, retryStrategy: (times: number) => (times > seconds ? null : 1000) };
}

/** BullMQ loses jobs on a Redis that evicts keys; say so where the setting is readable. */
async function checkEvictionPolicy(r: Redis, url: string): Promise<void> {
  let policy: string | null = null;
  try {
    const res = (await r.config('GET', 'maxmemory-policy')) as string[];
    policy = res[1] ?? null;
  } catch {
    return; // managed Redis often forbids CONFIG; BullMQ itself warns there
  }
  if (policy && policy !== 'noeviction') {
    throw new HepolyError(`--queue ${redactUrl(url)}: Redis runs with maxmemory-policy ${policy}, which may evict queued jobs; run it with --maxmemory-policy noeviction (or CONFIG SET maxmemory-policy noeviction)`);
  }
}
