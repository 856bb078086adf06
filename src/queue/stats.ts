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
}

export interface QueueStats {
  queue: string;
  runId: string;
  shardSize: number;
  shards: number;
  /** shards read back from the --run-id state instead of computed */
  resumedShards: number;
  computedShards: number;
  shardsPerWorker: Record<string, number>;
  /** mean per job: on the worker from start to stored result */
  jobMs: number;
  /** mean per job: evaluation alone */
  evalMs: number;
  /** mean per job: a free worker's wait before it started the job (enqueue or its previous job to start) */
  startGapMs: number;
  /** mean per job: stored result to the client having it decrypted */
  collectMs: number;
  /** (start gap + collect + job - eval) / job, over all jobs */
  overheadFraction: number;
}

export function summarizeTimings(t: JobTiming[]): Pick<QueueStats, 'jobMs' | 'evalMs' | 'startGapMs' | 'collectMs' | 'overheadFraction'> {
  if (!t.length) return { jobMs: 0, evalMs: 0, startGapMs: 0, collectMs: 0, overheadFraction: 0 };
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
  return { jobMs, evalMs, startGapMs, collectMs, overheadFraction: jobMs > 0 ? (startGapMs + collectMs + Math.max(0, jobMs - evalMs)) / jobMs : 0 };
}
