import { randomBytes } from 'node:crypto';
import { FlowProducer, Job, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { type OpCounts, addCounts, zeroCounts } from '../he/backend.js';
import type { PublicBundle } from '../he/client.js';
import type { HeProgram } from '../he/program.js';
import type { RefreshRecord } from '../he/refresh.js';
import { HepolyError } from '../util/errors.js';
import { reportProgress } from '../util/progress-event.js';
import { decodeShard, encodeArtifact, encodeEvaluationKeys, encodeShard } from './artifact.js';
import { connectRedis, redactUrl, RUN_QUEUE, SHARD_QUEUE } from './connection.js';
import { checkRunId, type ShardJob, type ShardResultMeta, shardJobId } from './job.js';
import { RunState } from './run-state.js';
import { keys, putBlob, RUN_TTL_S, sha256 } from './store.js';
import type { TokenClient } from './token-client.js';
import { queueVersions } from './versions.js';
import { type JobTiming, type QueueStats, summarizeTimings } from './stats.js';

/**
 * The "server" of a queued he-validate, on the client's machine: the same face as HEServer
 * for sample packing, but each shard of samples becomes a BullMQ job (children of one parent
 * per run) that some `hepoly worker` evaluates. The client's secret key stays in `client`;
 * only the artifact, the evaluation keys and ciphertexts are written to Redis.
 */

export interface QueueOptions {
  url: string;
  /** samples per job (default 4) */
  shardSize?: number;
  /** names the run: re-run with it to resume (needs a local state folder) */
  runId?: string;
  /** where --run-id keeps its state (default .hepoly-runs/RUN_ID) */
  runDir?: string;
  /** tries per shard before the run fails (default 3) */
  attempts?: number;
  /** test hook: called after every shard is collected, before the run's keys (inputs, results, jobs) are deleted */
  beforeCleanup?: (redis: Redis) => Promise<void>;
}

const DEFAULT_SHARD_SIZE = 4;

export class QueueServer {
  counts: OpCounts = zeroCounts();
  prepareMs = 0;
  readonly refreshes: RefreshRecord[] = [];
  readonly workerHeapBytes = 0;
  private timings: JobTiming[] = [];
  private shardsByWorker = new Map<string, number>();
  private resumed = 0;
  private shardCount = 0;
  private readonly shardQueue: Queue;
  private flowRoot: string | null = null;

  private constructor(
    private readonly redis: Redis,
    private readonly client: TokenClient,
    private readonly opts: QueueOptions & { shardSize: number; runId: string },
    private readonly session: string,
    private readonly artifactHash: string,
    private readonly keysHash: string,
    private readonly state: RunState,
  ) {
    this.shardQueue = new Queue(SHARD_QUEUE, { connection: redis });
  }

  static async start(bundle: PublicBundle, program: HeProgram, mode: 'seal' | 'simulate', client: TokenClient, o: QueueOptions): Promise<QueueServer> {
    const shardSize = o.shardSize ?? DEFAULT_SHARD_SIZE;
    if (!Number.isInteger(shardSize) || shardSize < 1) throw new HepolyError(`--shard-size: expected a whole number of samples >= 1, found ${shardSize}`, { exitCode: 2 });
    checkRunId(o.runId);
    const t = performance.now();
    const redis = await connectRedis(o.url);
    const artifact = encodeArtifact({ params: bundle.params, program, mode });
    const state = RunState.open(o.runId ? (o.runDir ?? `.hepoly-runs/${o.runId}`) : null, sha256(new TextEncoder().encode(`${sha256(artifact)}|${shardSize}|${mode}`)), o.runId ?? '');
    const artifactHash = await putBlob(redis, artifact);
    const keysHash = await putBlob(redis, encodeEvaluationKeys(bundle));
    const runId = o.runId ?? `run-${randomBytes(6).toString('hex')}`;
    const server = new QueueServer(redis, client, { ...o, shardSize, runId }, randomBytes(4).toString('hex'), artifactHash, keysHash, state);
    server.prepareMs = performance.now() - t;
    return server;
  }

  /** distinct workers that returned shards in this run */
  get workerCount(): number {
    return Math.max(1, this.shardsByWorker.size);
  }

  evaluateBatch(): never {
    throw new Error('internal: a queued run uses sample packing');
  }

  async evaluateSamples(samples: Uint8Array[][], _trace = false, _refresh?: unknown): Promise<{ outputs: Uint8Array[][]; trace: never[][]; ms: number[] }> {
    const K = this.opts.shardSize;
    this.shardCount = Math.ceil(samples.length / K);
    const outputs: Uint8Array[][] = new Array(samples.length);
    const ms: number[] = new Array(samples.length).fill(0);
    const pending: number[] = [];
    for (let k = 0; k < this.shardCount; k++) {
      const count = Math.min(K, samples.length - k * K);
      const saved = this.state.load(k, count);
      if (!saved) {
        pending.push(k);
        continue;
      }
      this.resumed++;
      saved.vectors.forEach((v, i) => (outputs[k * K + i] = v.map((x) => this.client.token(x))));
    }
    let done = this.shardCount - pending.length;
    reportProgress({ stage: 'queue shards', done, total: this.shardCount, unit: 'shards' });
    if (!pending.length) return { outputs, trace: [], ms };
    const enqueuedAt = await this.enqueue(samples, pending);
    const waiting = new Set(pending);
    const blocking = this.redis.duplicate();
    blocking.on('error', () => {});
    try {
      while (waiting.size) {
        const popped = await blocking.blpop(keys.done(this.opts.runId, this.session), 1);
        if (!popped) {
          await this.failIfAnyFailed(waiting);
          continue;
        }
        const k = Number(popped[1]);
        if (!waiting.has(k)) continue; // a shard re-run after a stall reports twice
        const meta = await this.collect(k, outputs, ms);
        this.timings.push({ worker: meta.worker, enqueuedAt, startedAt: meta.startedAt, storedAt: meta.storedAt, collectedAt: Date.now(), evalMs: meta.ms.reduce((a, b) => a + b, 0), setupMs: meta.setupMs });
        waiting.delete(k);
        reportProgress({ stage: 'queue shards', done: ++done, total: this.shardCount, unit: 'shards' });
      }
    } catch (e) {
      if (e instanceof HepolyError) throw e;
      throw this.lostRedis(e, done);
    } finally {
      blocking.disconnect();
    }
    return { outputs, trace: [], ms };
  }

  private lostRedis(e: unknown, done: number): HepolyError {
    const resume = this.state.dir ? `re-run with --run-id ${this.opts.runId} to resume` : 'add --run-id NAME next time to make a run resumable';
    return new HepolyError(
      `queue run ${this.opts.runId}: lost Redis at ${redactUrl(this.opts.url)} mid-run (${(e as Error).message}) with ${done} of ${this.shardCount} shards collected. Start Redis again (or point --queue at another) and ${resume}`,
    );
  }

  /** Inputs first (a job must find them), then one flow: the run's parent and a child per shard. */
  private async enqueue(samples: Uint8Array[][], pending: number[]): Promise<number> {
    const { runId, shardSize: K } = this.opts;
    const multi = this.redis.multi();
    for (const k of pending) multi.set(keys.input(runId, this.session, k), Buffer.from(encodeShard({}, samples.slice(k * K, (k + 1) * K))), 'EX', RUN_TTL_S);
    await multi.exec();
    const versions = queueVersions();
    const flow = new FlowProducer({ connection: this.redis });
    this.flowRoot = `${runId}.${this.session}`;
    const enqueuedAt = Date.now();
    await flow.add({
      name: `run ${runId}`,
      queueName: RUN_QUEUE,
      data: { run: runId, session: this.session },
      opts: { jobId: this.flowRoot },
      children: pending.map((k) => {
        const data: ShardJob = { run: runId, session: this.session, shard: k, samples: Math.min(K, samples.length - k * K), artifact: this.artifactHash, keys: this.keysHash, versions };
        return { name: `shard ${k}`, queueName: SHARD_QUEUE, data, opts: { jobId: shardJobId(runId, this.session, k), attempts: this.opts.attempts ?? 3, backoff: { type: 'fixed', delay: 200 } } };
      }),
    });
    await flow.close();
    return enqueuedAt;
  }

  /** Reads, decrypts and records shard k's outputs. */
  private async collect(k: number, outputs: Uint8Array[][], ms: number[]): Promise<ShardResultMeta> {
    const raw = await this.redis.getBuffer(keys.output(this.opts.runId, this.session, k));
    if (!raw) throw new HepolyError(`queue run ${this.opts.runId}: shard ${k} was reported done but its result is not in Redis`);
    const { meta, samples } = decodeShard<ShardResultMeta>(new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength), `shard ${k} result`);
    const vectors = samples.map((cts) => cts.map((b) => this.client.inner.decrypt(b)));
    this.state.save(k, { vectors, worker: meta.worker });
    vectors.forEach((v, i) => {
      outputs[k * this.opts.shardSize + i] = v.map((x, j) => this.client.token(x, samples[i][j]));
      ms[k * this.opts.shardSize + i] = meta.ms[i];
    });
    this.counts = addCounts(this.counts, meta.counts);
    this.shardsByWorker.set(meta.worker, (this.shardsByWorker.get(meta.worker) ?? 0) + 1);
    return meta;
  }

  /** A shard out of tries ends the run, naming it and the worker's last message. */
  private async failIfAnyFailed(waiting: Set<number>): Promise<void> {
    if ((await this.shardQueue.getFailedCount()) === 0) return;
    for (const k of waiting) {
      const job = await Job.fromId(this.shardQueue, shardJobId(this.opts.runId, this.session, k));
      if (job && (await job.isFailed())) {
        throw new HepolyError(
          `queue run ${this.opts.runId}: shard ${k} (samples ${k * this.opts.shardSize}-${(k + 1) * this.opts.shardSize - 1}) failed after ${job.attemptsMade} tr${job.attemptsMade === 1 ? 'y' : 'ies'}: ${job.failedReason}. Fix the cause and re-run with --run-id ${this.opts.runId} to resume`,
        );
      }
    }
  }

  stats(): QueueStats {
    return {
      queue: redactUrl(this.opts.url),
      runId: this.opts.runId,
      shardSize: this.opts.shardSize,
      shards: this.shardCount,
      resumedShards: this.resumed,
      computedShards: this.timings.length,
      shardsPerWorker: Object.fromEntries(this.shardsByWorker),
      ...summarizeTimings(this.timings),
    };
  }

  async close(): Promise<void> {
    try {
      await this.opts.beforeCleanup?.(this.redis);
    } finally {
      await this.cleanup();
    }
  }

  /** The run's jobs and per-shard keys go; the artifact and key blobs stay for the next run. */
  private async cleanup(): Promise<void> {
    if (this.redis.status !== 'ready') {
      // Redis is gone: nothing to delete there now (its keys expire with the server's data)
      this.redis.disconnect();
      return;
    }
    const { runId } = this.opts;
    const shardKeys: string[] = [keys.done(runId, this.session)];
    for (let k = 0; k < this.shardCount; k++) shardKeys.push(keys.input(runId, this.session, k), keys.output(runId, this.session, k));
    try {
      if (this.flowRoot) {
        const runQueue = new Queue(RUN_QUEUE, { connection: this.redis });
        await runQueue.remove(this.flowRoot, { removeChildren: true }).catch(() => 0);
        await runQueue.close();
      }
      await this.redis.del(...shardKeys);
    } finally {
      await this.shardQueue.close();
      this.redis.disconnect();
    }
  }
}
