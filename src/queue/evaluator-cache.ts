import type { Redis } from 'ioredis';
import { HEServer } from '../he/server.js';
import { decodeArtifact, decodeEvaluationKeys } from './artifact.js';
import { getBlob } from './store.js';

/**
 * A worker process's evaluators, one per (artifact, keys) pair: fetched from Redis once, not
 * once per job, and kept for the next jobs of the run. Each is the in-process server's own
 * HEServer (worker threads, each with its own SEAL heap); the oldest is closed past `limit`.
 */
export class EvaluatorCache {
  private entries = new Map<string, Promise<HEServer>>();
  /** blobs fetched from Redis so far (tests: once per run, not per job) */
  fetches = 0;

  constructor(
    private readonly redis: Redis,
    private readonly threads: number,
    private readonly log: (line: string) => void = () => {},
    private readonly limit = 2,
  ) {}

  get(artifactHash: string, keysHash: string): Promise<HEServer> {
    const id = `${artifactHash}:${keysHash}`;
    let e = this.entries.get(id);
    if (!e) {
      e = this.start(artifactHash, keysHash);
      e.catch(() => this.entries.delete(id));
      this.entries.set(id, e);
      this.evict();
    }
    return e;
  }

  private async start(artifactHash: string, keysHash: string): Promise<HEServer> {
    const t = performance.now();
    const artifactBytes = await getBlob(this.redis, artifactHash, 'server artifact');
    const keyBytes = await getBlob(this.redis, keysHash, 'evaluation keys');
    this.fetches += 2;
    const artifact = decodeArtifact(artifactBytes);
    const server = await HEServer.start(decodeEvaluationKeys(keyBytes, artifact.params), artifact.program, artifact.packing ?? 'sample', { workers: this.threads, mode: artifact.mode });
    const mb = (artifactBytes.length + keyBytes.length) / 2 ** 20;
    this.log(`evaluator ready: artifact ${artifactHash.slice(0, 12)}, keys ${keysHash.slice(0, 12)} (${mb.toFixed(1)} MiB fetched), ${this.threads} thread(s), ${(performance.now() - t).toFixed(0)} ms`);
    return server;
  }

  private evict(): void {
    while (this.entries.size > this.limit) {
      const [oldest, server] = this.entries.entries().next().value as [string, Promise<HEServer>];
      this.entries.delete(oldest);
      // a job still running on it finishes first: close after a grace period
      setTimeout(() => void server.then((s) => s.close()).catch(() => {}), 60_000).unref();
    }
  }

  async close(): Promise<void> {
    const all = [...this.entries.values()];
    this.entries.clear();
    await Promise.all(all.map((e) => e.then((s) => s.close()).catch(() => {})));
  }
}
