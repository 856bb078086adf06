import { hostname } from 'node:os';
import { UnrecoverableError, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { HepolyError } from '../util/errors.js';
import type { HEServer } from '../he/server.js';
import { decodeShard, decodeTensorShard, encodeShard, encodeTensorShard } from './artifact.js';
import { connectRedis, redactUrl, SHARD_QUEUE } from './connection.js';
import { EvaluatorCache } from './evaluator-cache.js';
import { type ShardJob, type ShardResultMeta, ShardJobSchema, shardTag } from './job.js';
import { keys, RUN_TTL_S } from './store.js';
import { queueVersions, versionMismatch } from './versions.js';

/**
 * `hepoly worker --queue URL`: a long-running evaluator on any machine. It holds no secret
 * key (it never receives one: jobs reference public artifacts and ciphertexts only), takes
 * shard jobs from BullMQ, evaluates them with the in-process server's HEServer and stores the
 * output ciphertexts under (run, session, shard). Storing is idempotent: a job re-run after a
 * stall writes the same key again, and the client counts each shard once.
 */

export interface QueueWorkerOptions {
  url: string;
  /** jobs at a time, each on its own worker thread */
  concurrency?: number;
  /** ms a job's lock lives without renewal: a killed worker's job is re-run after about this */
  lockMs?: number;
  log?: (line: string) => void;
}

export interface QueueWorker {
  id: string;
  jobsDone(): number;
  close(): Promise<void>;
}

export async function startQueueWorker(o: QueueWorkerOptions): Promise<QueueWorker> {
  const log = o.log ?? (() => {});
  const concurrency = o.concurrency ?? 1;
  const redis = await connectRedis(o.url, 'worker');
  const id = `${hostname()}:${process.pid}`;
  const cache = new EvaluatorCache(redis, concurrency, (line) => log(`worker ${id}: ${line}`));
  const mine = queueVersions();
  let done = 0;
  const lockDuration = o.lockMs ?? 30_000;
  const worker = new Worker(SHARD_QUEUE, (job: Job) => runShard(job, redis, cache, id, mine).then(() => void done++), {
    connection: redis,
    concurrency,
    lockDuration,
    stalledInterval: Math.max(1000, Math.floor(lockDuration / 2)),
    maxStalledCount: 2,
  });
  worker.on('active', (job) => log(`worker ${id}: shard job ${job.id} started`));
  worker.on('failed', (job, err) => log(`worker ${id}: shard job ${job?.id} failed: ${err.message}`));
  worker.on('error', (err) => log(`worker ${id}: ${err.message}`));
  await worker.waitUntilReady();
  log(`worker ${id}: waiting for shard jobs on ${redactUrl(o.url)} (concurrency ${concurrency})`);
  return {
    id,
    jobsDone: () => done,
    close: async () => {
      await worker.close();
      await cache.close();
      redis.disconnect();
    },
  };
}

async function runShard(job: Job, redis: Redis, cache: EvaluatorCache, id: string, mine: ReturnType<typeof queueVersions>): Promise<void> {
  const parsed = ShardJobSchema.safeParse(job.data);
  if (!parsed.success) throw new UnrecoverableError(`worker ${id}: job ${job.id} is not a hepoly shard job (${parsed.error.issues[0]?.message})`);
  const d = parsed.data;
  const mismatch = versionMismatch(d.versions, mine);
  if (mismatch) throw new UnrecoverableError(`worker ${id} refuses shard ${d.shard}: ${mismatch}`);
  const segment = d.segment ?? 0;
  const outKey = keys.output(d.run, d.session, d.shard, segment);
  // a re-run of a job whose result is stored already (a stall after the write) adds nothing
  if (!(await redis.exists(outKey))) {
    const startedAt = Date.now();
    const raw = await redis.getBuffer(keys.input(d.run, d.session, d.shard, segment));
    if (!raw) throw new UnrecoverableError(`shard ${d.shard} of run ${d.run}: its input ciphertexts are not in Redis (the client removed the run); run he-validate --run-id ${d.run} again`);
    const input = new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength);
    maybeInjectFault(d.shard);
    const tSetup = performance.now();
    const server = await cache.get(d.artifact, d.keys);
    const setupMs = performance.now() - tSetup;
    const before = { ...server.counts };
    const stamp = () => ({ worker: id, setupMs, startedAt, storedAt: Date.now() });
    const counts = () => Object.fromEntries(Object.entries(server.counts).map(([k, v]) => [k, v - before[k as keyof typeof before]])) as typeof before;
    let result: Uint8Array;
    if (server.packing === 'batch') {
      result = await batchShard(server, d, segment, input, (ms) => ({ ...stamp(), ms, counts: counts() }));
    } else if (server.program.refreshes?.length) {
      // a program cut for client refreshes: this job is one segment; the client refreshes its outputs and queues the next
      const { samples } = decodeTensorShard(input, `shard ${d.shard} segment ${segment} input`);
      checkSampleCount(d, samples.length);
      const res = await server.evaluateSegment(segment, samples);
      result = encodeTensorShard({ ...stamp(), ms: res.ms, counts: counts() } satisfies ShardResultMeta, res.outputs);
    } else {
      const { samples } = decodeShard(input, `shard ${d.shard} input`);
      checkSampleCount(d, samples.length);
      const res = await server.evaluateSamples(samples);
      // the server's counts add up over its jobs; this job's share (exact at concurrency 1)
      result = encodeShard({ ...stamp(), ms: res.ms, counts: counts() } satisfies ShardResultMeta, res.outputs);
    }
    await redis.set(outKey, Buffer.from(result), 'EX', RUN_TTL_S);
  }
  await redis.multi().rpush(keys.done(d.run, d.session), shardTag(d.shard, segment)).expire(keys.done(d.run, d.session), RUN_TTL_S).exec();
}

/**
 * A batch-packed shard: one pass (a "sample" of the shard format holding one ciphertext per
 * element, an empty part for an element the packing leaves out), whole or one segment of a
 * program cut for client refreshes.
 */
async function batchShard(server: HEServer, d: ShardJob, segment: number, input: Uint8Array, meta: (ms: number[]) => ShardResultMeta): Promise<Uint8Array> {
  const present = (cts: Uint8Array[]) => cts.map((b) => (b.length ? b : null));
  const absent = (cts: (Uint8Array | null)[]) => cts.map((b) => b ?? new Uint8Array(0));
  if (server.program.refreshes?.length) {
    const { samples } = decodeTensorShard(input, `shard ${d.shard} segment ${segment} input`);
    checkSampleCount(d, samples.length);
    const res = [];
    for (const tensors of samples) res.push(await server.evaluateBatchSegment(segment, tensors));
    return encodeTensorShard(meta(res.map((r) => r.ms)), res.map((r) => r.outputs));
  }
  const { samples } = decodeShard(input, `shard ${d.shard} input`);
  checkSampleCount(d, samples.length);
  const outputs: Uint8Array[][] = [];
  const ms: number[] = [];
  for (const pass of samples) {
    const t0 = performance.now();
    outputs.push(absent((await server.evaluateBatch(present(pass))).outputs));
    ms.push(performance.now() - t0);
  }
  return encodeShard(meta(ms), outputs);
}

function checkSampleCount(d: ShardJob, found: number): void {
  if (found !== d.samples) throw new UnrecoverableError(`shard ${d.shard}: the job says ${d.samples} samples, its input holds ${found}`);
}

/**
 * HEPOLY_QUEUE_TEST_FAULT (test/queue only): `poison:K` fails shard K every time; `hang:K`
 * makes shard K wait forever, so a test can kill the worker mid-job.
 */
function maybeInjectFault(shard: number): void {
  const f = process.env.HEPOLY_QUEUE_TEST_FAULT;
  if (!f) return;
  const [kind, k] = f.split(':');
  if (Number(k) !== shard) return;
  if (kind === 'poison') throw new HepolyError(`test fault: shard ${shard} is poisoned`);
  if (kind === 'hang') {
    // a busy wait holds the event loop like a long SEAL call would... but then the lock is
    // not renewed either, which is exactly a dead worker to BullMQ
    for (;;) {
      /* wait to be killed */
    }
  }
}
