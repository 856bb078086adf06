import { Job, Queue, type JobsOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import { encodeArtifact, encodeEvaluationKeys, type ServerArtifact } from './artifact.js';
import { SHARD_QUEUE } from './connection.js';
import { parseShardTag, type ShardJob, shardJobId } from './job.js';
import { keys, putBlob, RUN_TTL_S } from './store.js';
import type { PublicBundle } from '../he/client.js';
import type { HeParams } from '../he/params.js';
import { queueVersions } from './versions.js';

/** What a worker evaluates with besides the artifact: public material only (rotation steps are informative). */
export type EvaluationKeys = Pick<PublicBundle, 'publicKey' | 'relinKeys' | 'galoisKeys'> & { rotationSteps?: number[] };

/**
 * One client session on the shard queue (a he-validate run, or a server handing requests to
 * workers): its Redis connection, shard inputs in and results out under (run, session,
 * shard, segment), shard jobs, the done list the workers push to, and failed jobs. Both
 * QueueServer (validation) and QueueEvaluator (one evaluation at a time) talk to workers
 * only through it.
 */
export class ShardChannel {
  readonly shardQueue: Queue;
  private blocking: Redis | null = null;
  private readonly versions = queueVersions();

  constructor(
    readonly redis: Redis,
    readonly run: string,
    readonly session: string,
    private readonly attempts: number,
    /** completed jobs of a long-lived session are removed at once (a validation run removes its own at the end) */
    private readonly removeOnComplete = false,
  ) {
    this.shardQueue = new Queue(SHARD_QUEUE, { connection: redis });
  }

  /** Stores the server artifact and evaluation keys by content hash (no-ops when present). */
  static async upload(redis: Redis, artifact: ServerArtifact, bundle: EvaluationKeys): Promise<{ artifact: string; keys: string }> {
    return { artifact: await ShardChannel.uploadArtifact(redis, artifact), keys: await ShardChannel.uploadKeys(redis, artifact.params, bundle) };
  }

  static uploadArtifact(redis: Redis, artifact: ServerArtifact): Promise<string> {
    return putBlob(redis, encodeArtifact(artifact));
  }

  static uploadKeys(redis: Redis, params: HeParams, bundle: EvaluationKeys): Promise<string> {
    return putBlob(redis, encodeEvaluationKeys({ params, rotationSteps: [], ...bundle }));
  }

  jobData(shard: number, segment: number, samples: number, hashes: { artifact: string; keys: string }): ShardJob {
    return { run: this.run, session: this.session, shard, ...(segment ? { segment } : {}), samples, artifact: hashes.artifact, keys: hashes.keys, versions: this.versions };
  }

  jobOptions(shard: number, segment = 0): JobsOptions & { jobId: string } {
    return {
      jobId: shardJobId(this.run, this.session, shard, segment),
      attempts: this.attempts,
      backoff: { type: 'fixed', delay: 200 },
      // a shard's next segment (after a client refresh) goes ahead of shards not started:
      // shards finish depth first, so few are mid-chain when a run is interrupted (a resume
      // recomputes those) and decrypted shards reach --run-id state from the start of the run
      ...(segment > 0 ? { lifo: true } : {}),
      ...(this.removeOnComplete ? { removeOnComplete: true, removeOnFail: { age: 3600 } } : {}),
    };
  }

  /** Puts a shard's input; its job must be added after. */
  async putInput(shard: number, segment: number, bytes: Uint8Array): Promise<void> {
    await this.redis.set(keys.input(this.run, this.session, shard, segment), Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), 'EX', RUN_TTL_S);
  }

  async addJob(data: ShardJob): Promise<void> {
    await this.shardQueue.add(`shard ${data.shard}`, data, this.jobOptions(data.shard, data.segment ?? 0));
  }

  /** The next (shard, segment) whose result was stored, or null after `timeoutS` without one. */
  async next(timeoutS: number): Promise<{ shard: number; segment: number } | null> {
    if (!this.blocking) {
      // BLPOP blocks its connection: one of its own
      this.blocking = this.redis.duplicate();
      this.blocking.on('error', () => {});
    }
    const popped = await this.blocking.blpop(keys.done(this.run, this.session), timeoutS);
    return popped ? parseShardTag(popped[1]) : null;
  }

  async output(shard: number, segment: number): Promise<Uint8Array | null> {
    const raw = await this.redis.getBuffer(keys.output(this.run, this.session, shard, segment));
    return raw ? new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength) : null;
  }

  /** Drops a (shard, segment)'s input and result once the client has read it. */
  async drop(shard: number, segment: number): Promise<void> {
    await this.redis.del(keys.input(this.run, this.session, shard, segment), keys.output(this.run, this.session, shard, segment));
  }

  /** Why a (shard, segment)'s job failed for good (out of tries, or refused), or null. */
  async failure(shard: number, segment: number): Promise<{ reason: string; tries: number } | null> {
    const job = await Job.fromId(this.shardQueue, shardJobId(this.run, this.session, shard, segment));
    if (!job || !(await job.isFailed())) return null;
    return { reason: job.failedReason, tries: job.attemptsMade };
  }

  async anyFailed(): Promise<boolean> {
    return (await this.shardQueue.getFailedCount()) > 0;
  }

  async removeJob(shard: number, segment: number): Promise<void> {
    await this.shardQueue.remove(shardJobId(this.run, this.session, shard, segment)).catch(() => 0);
  }

  /** `lost`: Redis is gone, so nothing waits on it (BullMQ's close would wait for a reconnect). */
  async close(lost = false): Promise<void> {
    this.blocking?.disconnect();
    this.blocking = null;
    if (lost) void this.shardQueue.close().catch(() => {});
    else await this.shardQueue.close();
  }
}
