import { loadCheckpoint } from '../train/checkpoint.js';
import { summarize, type ModelSummary } from '../models/summary.js';

/** What `hepoly summary --json` prints: layers, shapes, parameters, activation ranges, HE depth. */
export type SummaryResult = { checkpoint: string } & ModelSummary;

export function summary(checkpoint: string): SummaryResult {
  const ckpt = loadCheckpoint(checkpoint);
  return { checkpoint: ckpt.dir, ...summarize(ckpt.graph, ckpt.ranges) };
}
