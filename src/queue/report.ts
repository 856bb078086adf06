import type { QueueStats } from './stats.js';

/** The lines a queued run adds to he-validate's report. */
export function queueReportLines(q: QueueStats | undefined): string[] {
  if (!q) return [];
  const workers = Object.entries(q.shardsPerWorker).map(([w, n]) => `${w}: ${n}`).join(', ') || 'none (all resumed)';
  return [
    `queue ${q.queue}, run ${q.runId}: ${q.shards} shards of ${q.shardSize} samples, ${q.computedShards} computed, ${q.resumedShards} resumed`,
    `  shards per worker: ${workers}`,
    ...(q.segmentsPerShard > 1 ? [`  client refreshes: ${q.segmentsPerShard} segment jobs per shard, ${q.roundTrips} round trips (segment results back to the client, refreshed, queued again) in ${q.jobs} jobs`] : []),
    `  per job: ${q.jobMs.toFixed(0)} ms on the worker (${q.evalMs.toFixed(0)} ms evaluating), start gap ${q.startGapMs.toFixed(1)} ms, collect ${q.collectMs.toFixed(1)} ms: queue overhead ${(100 * q.overheadFraction).toFixed(1)}% of evaluation`,
    `  evaluator set-up (artifact + keys fetched, once per worker and run): ${q.setupMsPerWorker.toFixed(0)} ms`,
  ];
}
