import { randomBytes } from 'node:crypto';
import type { HeParams } from '../he/params.js';
import type { HeProgram } from '../he/program.js';
import { HepolyError } from '../util/errors.js';
import { decodeShard, encodeShard } from './artifact.js';
import { type EvaluationKeys, ShardChannel } from './channel.js';
import { connectRedis, redactUrl } from './connection.js';
import type { ShardResultMeta } from './job.js';
import { keys as redisKeys } from './store.js';

const blobKey = (hash: string) => redisKeys.blob(hash);

/**
 * One evaluation at a time through the queue, for a server that hands its requests to
 * `hepoly worker`s (`hepoly serve --queue`) instead of evaluating them itself: the same face
 * as the serve worker pool, `run(keyId, keys, inputs)`. Each call is a one-sample shard job;
 * the server artifact is uploaded once, each client's evaluation keys once per key id (by
 * content hash, so workers fetch and cache them once too). Only public material and
 * ciphertexts go to Redis; the caller never holds a secret key either.
 *
 *   const q = await QueueEvaluator.open({ url: 'redis://HOST:6379', params, program });
 *   const { outputs } = await q.run(keyId, () => keys, inputCiphertexts);
 */

export interface QueueEvaluatorOptions {
  /** redis://[:PASSWORD@]HOST:PORT, rediss:// for TLS */
  url: string;
  params: HeParams;
  /** the compiled program for sample packing (not cut for client refreshes) */
  program: HeProgram;
  mode?: 'seal' | 'simulate';
  /** tries per request before it fails (default 2: one retry on another worker) */
  attempts?: number;
  /** a request not answered within this fails (default 0: wait as long as it takes) */
  timeoutMs?: number;
}

/** A client's evaluation keys as bytes (public, relinearization, Galois): what a worker evaluates with. */
export type QueueEvaluationKeys = EvaluationKeys;

export interface QueueEvaluation {
  /** the result ciphertexts */
  outputs: Uint8Array[];
  /** evaluation time on the worker */
  ms: number;
  /** the worker that evaluated it, HOST:PID */
  worker: string;
}

interface Waiter {
  resolve: (r: QueueEvaluation) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout | null;
}

export class QueueEvaluator {
  private readonly keyHashes = new Map<string, Promise<string>>();
  private readonly waiting = new Map<number, Waiter>();
  private nextShard = 0;
  private collecting: Promise<void> | null = null;
  private closed = false;

  private constructor(
    private readonly channel: ShardChannel,
    private readonly artifact: { params: HeParams; program: HeProgram; mode: 'seal' | 'simulate' },
    private readonly artifactHash: string,
    private readonly o: QueueEvaluatorOptions,
  ) {}

  /** Connects (a clear error when Redis does not answer) and uploads the server artifact. */
  static async open(o: QueueEvaluatorOptions): Promise<QueueEvaluator> {
    if (o.program.refreshes?.length) throw new HepolyError('queue evaluator: a program cut for client refreshes needs the client between segments; serve it without --queue');
    const redis = await connectRedis(o.url);
    const artifact = { params: o.params, program: o.program, mode: o.mode ?? 'seal' };
    const artifactHash = await ShardChannel.uploadArtifact(redis, artifact);
    const channel = new ShardChannel(redis, `serve-${randomBytes(6).toString('hex')}`, randomBytes(4).toString('hex'), o.attempts ?? 2, true);
    return new QueueEvaluator(channel, artifact, artifactHash, o);
  }

  /** requests sent and not answered yet */
  get inFlight(): number {
    return this.waiting.size;
  }

  /**
   * Evaluates one sample's input ciphertexts on some worker. `keys` is called only when this
   * evaluator has not uploaded the key id's keys yet (or Redis lost them).
   */
  async run(keyId: string, keys: () => EvaluationKeys, inputs: Uint8Array[]): Promise<QueueEvaluation> {
    if (this.closed) throw new HepolyError('queue evaluator: closed');
    const keysHash = await this.keysFor(keyId, keys);
    const shard = this.nextShard++;
    await this.channel.putInput(shard, 0, encodeShard({}, [inputs]));
    const answer = new Promise<QueueEvaluation>((resolve, reject) => {
      const timer = this.o.timeoutMs ? setTimeout(() => this.fail(shard, new HepolyError(`queue evaluator: no worker answered within ${this.o.timeoutMs} ms (are workers running on ${redactUrl(this.o.url)}?)`)), this.o.timeoutMs) : null;
      this.waiting.set(shard, { resolve, reject, timer });
    });
    await this.channel.addJob(this.channel.jobData(shard, 0, 1, { artifact: this.artifactHash, keys: keysHash }));
    this.collecting ??= this.collect().finally(() => (this.collecting = null));
    return answer;
  }

  private async keysFor(keyId: string, keys: () => EvaluationKeys): Promise<string> {
    const known = this.keyHashes.get(keyId);
    // concurrent first requests of a client share one upload
    if (known && (await this.channel.redis.exists(blobKey(await known)))) return known;
    const upload = ShardChannel.uploadKeys(this.channel.redis, this.artifact.params, keys());
    this.keyHashes.set(keyId, upload);
    upload.catch(() => this.keyHashes.delete(keyId));
    return upload;
  }

  /** Runs while requests are out: each stored result resolves its request; a failed job rejects it. */
  private async collect(): Promise<void> {
    let checked = Date.now();
    while (this.waiting.size && !this.closed) {
      if (Date.now() - checked > 1000) {
        // also while answers keep coming: a failed request must not wait for a quiet second
        await this.failFailed();
        checked = Date.now();
      }
      let next: { shard: number } | null;
      try {
        next = await this.channel.next(1);
      } catch (e) {
        for (const k of [...this.waiting.keys()]) this.fail(k, new HepolyError(`queue evaluator: lost Redis at ${redactUrl(this.o.url)} (${(e as Error).message})`));
        return;
      }
      if (!next) continue;
      if (!this.waiting.has(next.shard)) continue; // a job re-run after a stall reports twice
      await this.answer(next.shard);
    }
  }

  private async answer(shard: number): Promise<void> {
    const raw = await this.channel.output(shard, 0);
    if (!raw) return this.fail(shard, new HepolyError(`queue evaluator: request ${shard} was reported done but its result is not in Redis`));
    const { meta, samples } = decodeShard<ShardResultMeta>(raw, `request ${shard} result`);
    await this.channel.drop(shard, 0);
    const w = this.take(shard);
    w?.resolve({ outputs: samples[0], ms: meta.ms[0], worker: meta.worker });
  }

  private async failFailed(): Promise<void> {
    if (!(await this.channel.anyFailed())) return;
    for (const k of [...this.waiting.keys()]) {
      const f = await this.channel.failure(k, 0);
      if (f) this.fail(k, new HepolyError(`queue evaluator: request failed after ${f.tries} tr${f.tries === 1 ? 'y' : 'ies'}: ${f.reason}`));
    }
  }

  private take(shard: number): Waiter | undefined {
    const w = this.waiting.get(shard);
    this.waiting.delete(shard);
    if (w?.timer) clearTimeout(w.timer);
    return w;
  }

  private fail(shard: number, e: Error): void {
    this.take(shard)?.reject(e);
    // its job and keys go: a late answer would find nobody waiting
    void this.channel.removeJob(shard, 0).catch(() => {});
    void this.channel.drop(shard, 0).catch(() => {});
  }

  /** Fails what is still out, removes this evaluator's keys from Redis and disconnects. */
  async close(): Promise<void> {
    this.closed = true;
    for (const k of [...this.waiting.keys()]) this.fail(k, new HepolyError('queue evaluator: closed before the answer came'));
    await this.collecting;
    const redis = this.channel.redis;
    const lost = redis.status !== 'ready';
    if (!lost) await redis.del(redisKeys.done(this.channel.run, this.channel.session)).catch(() => 0);
    await this.channel.close(lost);
    redis.disconnect();
  }
}

