import type { PublicBundle } from '../he/client.js';
import type { HeProgram } from '../he/program.js';
import type { ClientLike } from '../he/sim-client.js';
import { HepolyError } from '../util/errors.js';
import type { QueueServer, QueueOptions } from './server.js';
import type { QueueStats } from './stats.js';
import { TokenClient } from './token-client.js';

export type { QueueOptions, QueueStats };

/**
 * Where `he-validate --queue` joins src/he/validate.ts: the packing it runs, and a client and
 * "server" pair with the faces validate.ts already uses (ClientLike, HEServer's sample path).
 */

/**
 * A queued run shards samples with sample packing, or sends batch packing's one pass as its
 * shard (auto: batch for attention models, which only batch packing runs; else sample). Any
 * `refresh` works: with --refresh client each segment is a job, and its results come back to
 * the client between two (QueueServer).
 */
export function queuePacking(packing: string | undefined, _refresh: string | undefined, trace: boolean | undefined): string {
  if (trace) throw new HepolyError('--queue with --trace: not supported (trace decrypts every layer, which stays on one machine); run it without --queue');
  if (packing === undefined || packing === 'auto') return 'auto';
  if (packing === 'sample' || packing === 'batch') return packing;
  throw new HepolyError(`--queue with --packing ${packing}: queued runs shard samples with sample packing or send one batch pass; use --packing sample, batch or auto`);
}

export function startQueueRun(own: ClientLike, o: QueueOptions): {
  client: TokenClient;
  start(bundle: PublicBundle, program: HeProgram, mode: 'seal' | 'simulate', packing: 'sample' | 'batch'): Promise<QueueServer>;
  stats(): QueueStats;
} {
  const client = new TokenClient(own);
  let server: QueueServer | null = null;
  return {
    client,
    // loaded here, not at import: a run without --queue never loads BullMQ and ioredis
    start: async (bundle, program, mode, packing) => (server = await (await import('./server.js')).QueueServer.start(bundle, program, mode, client, o, packing)),
    stats: () => {
      if (!server) throw new Error('internal: queue stats before the queue run started');
      return server.stats();
    },
  };
}
