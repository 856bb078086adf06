import { currentVersions } from '../deploy/versions.js';
import { QUEUE_FORMAT } from './artifact.js';
import type { ShardJob } from './job.js';

/**
 * The versions a job is stamped with and a worker checks: another hepoly, node-seal or queue
 * format may read the same bytes differently, and a refusal beats computing garbage.
 * HEPOLY_QUEUE_TEST_VERSION stands in for another hepoly release (test/queue only).
 */
export function queueVersions(): ShardJob['versions'] {
  const v = currentVersions();
  return { hepoly: process.env.HEPOLY_QUEUE_TEST_VERSION || v.hepoly, node_seal: v.node_seal, queue_format: QUEUE_FORMAT };
}

/** Why this worker must not run `job`, or null. */
export function versionMismatch(job: ShardJob['versions'], mine: ShardJob['versions']): string | null {
  const diffs = (Object.keys(mine) as (keyof typeof mine)[]).filter((k) => job[k] !== mine[k]).map((k) => `${k} ${job[k]} (job) vs ${mine[k]} (worker)`);
  return diffs.length ? `version mismatch: ${diffs.join(', ')}; run workers and client from the same hepoly install` : null;
}
