import { randomBytes } from 'node:crypto';
import { FlowProducer, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { type OpCounts, addCounts, zeroCounts } from '../he/backend.js';
import type { PublicBundle } from '../he/client.js';
import type { HeProgram } from '../he/program.js';
import { type RefreshChannel, type RefreshRecord, type SegmentTensors, programSegments, refreshSegmentOutputs } from '../he/refresh.js';
import { HepolyError } from '../util/errors.js';
import { reportProgress } from '../util/progress-event.js';
import { decodeShard, decodeTensorShard, encodeArtifact, encodeShard, encodeTensorShard } from './artifact.js';
import { ShardChannel } from './channel.js';
import { connectRedis, redactUrl, RUN_QUEUE, SHARD_QUEUE } from './connection.js';
import { checkRunId, type ShardResultMeta } from './job.js';
import { RunState } from './run-state.js';
import { keys, RUN_TTL_S, sha256 } from './store.js';
import type { TokenClient } from './token-client.js';
import { type JobTiming, type QueueStats, summarizeTimings } from './stats.js';

/**
 * The "server" of a queued he-validate, on the client's machine: the same face as HEServer
 * for sample packing, but each shard of samples becomes a BullMQ job (children of one parent
 * per run) that some `hepoly worker` evaluates. The client's secret key stays in `client`;
 * only the artifact, the evaluation keys and ciphertexts are written to Redis. A program cut
 * for --refresh client runs as one job per shard and segment: each segment's results come
 * back here, are refreshed (decrypted and encrypted again) and go out as the shard's next job.
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
  /** per refresh point, summed over every sample that crossed it (a cut program) */
  readonly refreshes: RefreshRecord[] = [];
  readonly workerHeapBytes = 0;
  private timings: JobTiming[] = [];
  private shardsByWorker = new Map<string, number>();
  private resumed = 0;
  private computed = 0;
  /** segment results that came back to the client to be refreshed and sent on as a new job */
  private roundTrips = 0;
  private shardCount = 0;
  private flowRoot: string | null = null;
  private readonly segments: number;

  private constructor(
    private readonly channel: ShardChannel,
    private readonly client: TokenClient,
    private readonly program: HeProgram,
    private readonly opts: QueueOptions & { shardSize: number; runId: string },
    private readonly hashes: { artifact: string; keys: string },
    private readonly state: RunState,
  ) {
    this.segments = programSegments(program).length;
  }

  static async start(bundle: PublicBundle, program: HeProgram, mode: 'seal' | 'simulate', client: TokenClient, o: QueueOptions, packing: 'sample' | 'batch' = 'sample'): Promise<QueueServer> {
    // batch packing: a shard is one pass, which holds up to N/2 samples already
    const shardSize = packing === 'batch' ? 1 : (o.shardSize ?? DEFAULT_SHARD_SIZE);
    if (!Number.isInteger(shardSize) || shardSize < 1) throw new HepolyError(`--shard-size: expected a whole number of samples >= 1, found ${shardSize}`, { exitCode: 2 });
    checkRunId(o.runId);
    const t = performance.now();
    const redis = await connectRedis(o.url);
    const artifact = { params: bundle.params, program, mode, packing };
    const settings = sha256(new TextEncoder().encode(`${sha256(encodeArtifact(artifact))}|${shardSize}|${mode}`));
    const state = RunState.open(o.runId ? (o.runDir ?? `.hepoly-runs/${o.runId}`) : null, settings, o.runId ?? '');
    const hashes = await ShardChannel.upload(redis, artifact, bundle);
    const runId = o.runId ?? `run-${randomBytes(6).toString('hex')}`;
    const channel = new ShardChannel(redis, runId, randomBytes(4).toString('hex'), o.attempts ?? 3);
    const server = new QueueServer(channel, client, program, { ...o, shardSize, runId }, hashes, state);
    server.prepareMs = performance.now() - t;
    return server;
  }

  /** distinct workers that returned shards in this run */
  get workerCount(): number {
    return Math.max(1, this.shardsByWorker.size);
  }

  private batchPasses = 0;

  /**
   * Batch packing (transformers): the pass is the run's one shard, one ciphertext per element
   * (an element the packing leaves out crosses as an empty part, which refreshSegmentOutputs
   * leaves out); a cut program's segments are its jobs, refreshed here between two like a
   * sample shard's.
   */
  async evaluateBatch(inputs: (Uint8Array | null)[], refresh?: RefreshChannel): Promise<{ outputs: (Uint8Array | null)[]; tensors: Map<number, (Uint8Array | null)[]> }> {
    if (++this.batchPasses > 1) {
      throw new HepolyError(`queue run ${this.opts.runId}: a queued batch-packed run evaluates one pass of up to ${this.client.slots} samples; ask for at most that many (--samples), or run the rest as another run`);
    }
    const r = await this.evaluateSamples([inputs.map((b) => b ?? new Uint8Array(0))], false, refresh);
    return { outputs: r.outputs[0].map((b) => (b.length ? b : null)), tensors: new Map() };
  }

  async evaluateSamples(samples: Uint8Array[][], _trace = false, refresh?: RefreshChannel): Promise<{ outputs: Uint8Array[][]; trace: never[][]; ms: number[] }> {
    if (this.segments > 1 && !refresh) throw new Error('internal: a program cut for --refresh client needs a refresh channel to the client');
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
    /** each shard still out: the segment its job runs now */
    const waiting = new Map(pending.map((k) => [k, 0]));
    const jobQueuedAt = new Map(pending.map((k) => [k, enqueuedAt]));
    try {
      while (waiting.size) {
        const popped = await this.channel.next(1);
        if (!popped) {
          await this.failIfAnyFailed(waiting);
          continue;
        }
        const { shard: k, segment: j } = popped;
        if (waiting.get(k) !== j) continue; // a job re-run after a stall reports twice
        const meta = j < this.segments - 1 ? await this.refreshShard(k, j, refresh!) : await this.collect(k, j, outputs);
        meta.ms.forEach((t, i) => (ms[k * K + i] += t));
        this.timings.push({ worker: meta.worker, enqueuedAt: jobQueuedAt.get(k)!, startedAt: meta.startedAt, storedAt: meta.storedAt, collectedAt: Date.now(), evalMs: meta.ms.reduce((a, b) => a + b, 0), setupMs: meta.setupMs });
        if (j < this.segments - 1) {
          waiting.set(k, j + 1);
          jobQueuedAt.set(k, Date.now());
          continue;
        }
        waiting.delete(k);
        reportProgress({ stage: 'queue shards', done: ++done, total: this.shardCount, unit: 'shards' });
      }
    } catch (e) {
      if (e instanceof HepolyError) throw e;
      throw this.lostRedis(e, done);
    }
    return { outputs, trace: [], ms };
  }

  private lostRedis(e: unknown, done: number): HepolyError {
    const resume = this.state.dir ? `re-run with --run-id ${this.opts.runId} to resume` : 'add --run-id NAME next time to make a run resumable';
    return new HepolyError(
      `queue run ${this.opts.runId}: lost Redis at ${redactUrl(this.opts.url)} mid-run (${(e as Error).message}) with ${done} of ${this.shardCount} shards collected. Start Redis again (or point --queue at another) and ${resume}`,
    );
  }

  /** A shard's first job input: its samples' ciphertexts (framed per tensor when the program is cut). */
  private firstInput(samples: Uint8Array[][]): Uint8Array {
    return this.segments > 1 ? encodeTensorShard({}, samples.map((cts) => [{ tensor: this.program.input, cts }])) : encodeShard({}, samples);
  }

  /** Inputs first (a job must find them), then one flow: the run's parent and a child per shard. */
  private async enqueue(samples: Uint8Array[][], pending: number[]): Promise<number> {
    const { runId, shardSize: K } = this.opts;
    const multi = this.channel.redis.multi();
    for (const k of pending) multi.set(keys.input(runId, this.channel.session, k), Buffer.from(this.firstInput(samples.slice(k * K, (k + 1) * K))), 'EX', RUN_TTL_S);
    await multi.exec();
    const flow = new FlowProducer({ connection: this.channel.redis });
    this.flowRoot = `${runId}.${this.channel.session}`;
    const enqueuedAt = Date.now();
    await flow.add({
      name: `run ${runId}`,
      queueName: RUN_QUEUE,
      data: { run: runId, session: this.channel.session },
      opts: { jobId: this.flowRoot },
      children: pending.map((k) => ({
        name: `shard ${k}`,
        queueName: SHARD_QUEUE,
        data: this.channel.jobData(k, 0, Math.min(K, samples.length - k * K), this.hashes),
        opts: this.channel.jobOptions(k),
      })),
    });
    await flow.close();
    return enqueuedAt;
  }

  /**
   * Segment j of shard k came back: the client refreshes the tensors the next segment needs
   * (one round trip per shard and cut) and queues that segment as the shard's next job.
   */
  private async refreshShard(k: number, j: number, refresh: RefreshChannel): Promise<ShardResultMeta> {
    const { meta, samples } = decodeTensorShard<ShardResultMeta>(await this.resultOf(k, j), `shard ${k} segment ${j} result`);
    const next = await refreshSegmentOutputs(this.program, j, samples, refresh, this.refreshes);
    await this.channel.putInput(k, j + 1, encodeTensorShard({}, next));
    await this.channel.addJob(this.channel.jobData(k, j + 1, samples.length, this.hashes));
    await this.channel.drop(k, j);
    this.roundTrips++;
    this.count(meta);
    return meta;
  }

  private async resultOf(k: number, j: number): Promise<Uint8Array> {
    const raw = await this.channel.output(k, j);
    if (!raw) throw new HepolyError(`queue run ${this.opts.runId}: shard ${k} was reported done but its result is not in Redis`);
    return raw;
  }

  /** Reads, decrypts and records shard k's outputs (its last segment's, for a cut program). */
  private async collect(k: number, j: number, outputs: Uint8Array[][]): Promise<ShardResultMeta> {
    const raw = await this.resultOf(k, j);
    const what = `shard ${k} result`;
    const { meta, samples } = this.segments > 1 ? this.lastSegment(raw, what) : decodeShard<ShardResultMeta>(raw, what);
    // an empty part: a ciphertext batch packing leaves out (its slots read as zeros)
    const vectors = samples.map((cts) => cts.map((b) => (b.length ? this.client.inner.decrypt(b) : new Float64Array(this.client.slots))));
    this.state.save(k, { vectors, worker: meta.worker });
    vectors.forEach((v, i) => (outputs[k * this.opts.shardSize + i] = v.map((x, c) => this.client.token(x, samples[i][c]))));
    this.count(meta);
    this.computed++;
    this.shardsByWorker.set(meta.worker, (this.shardsByWorker.get(meta.worker) ?? 0) + 1);
    return meta;
  }

  private lastSegment(raw: Uint8Array, what: string): { meta: ShardResultMeta; samples: Uint8Array[][] } {
    const { meta, samples } = decodeTensorShard<ShardResultMeta>(raw, what);
    return { meta, samples: samples.map((s: SegmentTensors) => s.find((t) => t.tensor === this.program.output)!.cts) };
  }

  private count(meta: ShardResultMeta): void {
    this.counts = addCounts(this.counts, meta.counts);
  }

  /** A shard out of tries ends the run, naming it and the worker's last message. */
  private async failIfAnyFailed(waiting: Map<number, number>): Promise<void> {
    if (!(await this.channel.anyFailed())) return;
    for (const [k, j] of waiting) {
      const f = await this.channel.failure(k, j);
      if (!f) continue;
      const K = this.opts.shardSize;
      const where = this.segments > 1 ? `, segment ${j + 1} of ${this.segments}` : '';
      throw new HepolyError(
        `queue run ${this.opts.runId}: shard ${k} (samples ${k * K}-${(k + 1) * K - 1}${where}) failed after ${f.tries} tr${f.tries === 1 ? 'y' : 'ies'}: ${f.reason}. Fix the cause and re-run with --run-id ${this.opts.runId} to resume`,
      );
    }
  }

  stats(): QueueStats {
    return {
      queue: redactUrl(this.opts.url),
      runId: this.opts.runId,
      shardSize: this.opts.shardSize,
      shards: this.shardCount,
      resumedShards: this.resumed,
      computedShards: this.computed,
      jobs: this.timings.length,
      segmentsPerShard: this.segments,
      roundTrips: this.roundTrips,
      shardsPerWorker: Object.fromEntries(this.shardsByWorker),
      ...summarizeTimings(this.timings),
    };
  }

  async close(): Promise<void> {
    try {
      await this.opts.beforeCleanup?.(this.channel.redis);
    } finally {
      await this.cleanup();
    }
  }

  /** The run's jobs and per-shard keys go; the artifact and key blobs stay for the next run. */
  private async cleanup(): Promise<void> {
    const redis = this.channel.redis;
    if (redis.status !== 'ready') {
      // Redis is gone: nothing to delete there now (its keys expire with the server's data)
      await this.channel.close(true);
      redis.disconnect();
      return;
    }
    const { runId } = this.opts;
    const { session } = this.channel;
    const shardKeys: string[] = [keys.done(runId, session)];
    for (let k = 0; k < this.shardCount; k++) {
      for (let j = 0; j < this.segments; j++) shardKeys.push(keys.input(runId, session, k, j), keys.output(runId, session, k, j));
    }
    try {
      if (this.flowRoot) {
        const runQueue = new Queue(RUN_QUEUE, { connection: redis });
        await runQueue.remove(this.flowRoot, { removeChildren: true }).catch(() => 0);
        await runQueue.close();
      }
      // later segments' jobs are not children of the run's flow
      for (let k = 0; k < this.shardCount; k++) for (let j = 1; j < this.segments; j++) await this.channel.removeJob(k, j);
      await redis.del(...shardKeys);
    } finally {
      await this.channel.close();
      redis.disconnect();
    }
  }
}
