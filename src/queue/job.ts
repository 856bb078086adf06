import { z } from 'zod';
import type { OpCounts } from '../he/backend.js';
import { HepolyError } from '../util/errors.js';

/** The data of one shard job: small (references only); the ciphertexts are under keys.input. */
export const ShardJobSchema = z.object({
  run: z.string(),
  session: z.string(),
  shard: z.number().int().min(0),
  samples: z.number().int().min(1),
  /** a program cut for client refreshes: which segment this job runs (the client refreshes between two) */
  segment: z.number().int().min(0).optional(),
  artifact: z.string().length(64),
  keys: z.string().length(64),
  versions: z.object({ hepoly: z.string(), node_seal: z.string(), queue_format: z.number().int() }),
});
export type ShardJob = z.infer<typeof ShardJobSchema>;

/** What a worker writes beside a shard's output ciphertexts. */
export interface ShardResultMeta {
  worker: string;
  /** evaluation time per sample on one worker thread */
  ms: number[];
  counts: OpCounts;
  /** fetching the artifact and keys and starting the evaluator: the worker's first job of a run pays it, later ones find it cached */
  setupMs: number;
  /** epoch milliseconds: when the job started on the worker and when its result was stored */
  startedAt: number;
  storedAt: number;
}

export const RUN_ID_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/;

export function checkRunId(runId: string | undefined): void {
  if (runId !== undefined && !RUN_ID_PATTERN.test(runId)) {
    throw new HepolyError(`--run-id ${JSON.stringify(runId)}: use 1-64 letters, digits, '.', '_' or '-'`, { exitCode: 2 });
  }
}

/** BullMQ job ids may not contain ':'; run ids are checked against RUN_ID_PATTERN. */
export function shardJobId(run: string, session: string, shard: number, segment = 0): string {
  return `${run}.${session}.${shardTag(shard, segment)}`;
}

/** How a (shard, segment) is named in keys, job ids and the done list: `K`, or `K.J` past segment 0. */
export function shardTag(shard: number, segment = 0): string {
  return segment ? `${shard}.${segment}` : String(shard);
}

export function parseShardTag(tag: string): { shard: number; segment: number } {
  const [shard, segment = '0'] = tag.split('.');
  return { shard: Number(shard), segment: Number(segment) };
}
