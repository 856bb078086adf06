/**
 * Queue figures of a run: where time went besides evaluation. Clocks: enqueue and collection
 * are read on the client, start and store on the worker (same machine in the tests; across
 * machines the gaps include clock skew, which NTP keeps to milliseconds).
 */

export interface JobTiming {
  worker: string;
  enqueuedAt: number;
  startedAt: number;
  storedAt: number;
  collectedAt: number;
  /** evaluation time summed over the job's samples (worker threads) */
  evalMs: number;
  /** evaluator set-up inside the job (0 when the worker had it cached) */
  setupMs: number;
}

export interface QueueStats {
  queue: string;
  runId: string;
  shardSize: number;
  shards: number;
  /** shards read back from the --run-id state instead of computed */
  resumedShards: number;
  computedShards: number;
  /** jobs run: one per computed shard, or one per shard and segment for a program cut for client refreshes */
  jobs: number;
  /** 1, or the segments of a program cut for client refreshes */
  segmentsPerShard: number;
  /** segment results that came back to the client for a refresh and went out as a new job */
  roundTrips: number;
  shardsPerWorker: Record<string, number>;
  /** mean per job: on the worker from start to stored result */
  jobMs: number;
  /** mean per job: evaluation alone */
  evalMs: number;
  /** per worker and run, once: fetching artifact and keys, starting the evaluator (mean over the workers that did) */
  setupMsPerWorker: number;
  /** mean per job: a free worker's wait before it started the job (enqueue or its previous job to start) */
  startGapMs: number;
  /** mean per job: stored result to the client having it decrypted */
  collectMs: number;
  /** per job: (start gap + collect + time on the worker besides evaluating and set-up) / evaluating */
  overheadFraction: number;
}

export function summarizeTimings(t: JobTiming[]): Pick<QueueStats, 'jobMs' | 'evalMs' | 'setupMsPerWorker' | 'startGapMs' | 'collectMs' | 'overheadFraction'> {
  if (!t.length) return { jobMs: 0, evalMs: 0, setupMsPerWorker: 0, startGapMs: 0, collectMs: 0, overheadFraction: 0 };
  const mean = (f: (j: JobTiming) => number) => t.reduce((a, j) => a + f(j), 0) / t.length;
  const gaps: number[] = [];
  const byWorker = new Map<string, JobTiming[]>();
  for (const j of t) byWorker.set(j.worker, [...(byWorker.get(j.worker) ?? []), j]);
  for (const jobs of byWorker.values()) {
    jobs.sort((a, b) => a.startedAt - b.startedAt);
    // a worker runs several jobs at once with --concurrency; the gap is from the later of enqueue and its previous start
    jobs.forEach((j, i) => gaps.push(Math.max(0, j.startedAt - Math.max(j.enqueuedAt, i ? jobs[i - 1].storedAt : 0))));
  }
  const jobMs = mean((j) => j.storedAt - j.startedAt);
  const evalMs = mean((j) => j.evalMs);
  const startGapMs = gaps.reduce((a, b) => a + b, 0) / gaps.length;
  const collectMs = mean((j) => j.collectedAt - j.storedAt);
  // a worker's first job pays the set-up, the rest wait on the cached promise (~0 ms)
  const setupMsPerWorker = t.reduce((a, j) => a + j.setupMs, 0) / byWorker.size;
  const inWorker = mean((j) => Math.max(0, j.storedAt - j.startedAt - j.evalMs - j.setupMs));
  return { jobMs, evalMs, setupMsPerWorker, startGapMs, collectMs, overheadFraction: evalMs > 0 ? (startGapMs + collectMs + inWorker) / evalMs : 0 };
}
