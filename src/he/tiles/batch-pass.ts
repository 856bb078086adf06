import type { CkksBackend } from '../backend.js';
import type { HeProgram } from '../program.js';
import { stepSources } from '../program.js';
import { type Stage, type TensorStore, channelGroups, planStages, runStageGroup } from '../packing/batch.js';
import { size } from '../tensor-ops.js';

/**
 * A batch-packing pass in one thread, split into channel groups exactly as the server splits
 * it for `workers` threads (grouping changes how partial sums are formed, hence the counts).
 * Both the dry run and the measured run use it, so they evaluate the same schedule.
 */
export const SERVER_MEMORY_BUDGET = 2e9;

export function runBatchGrouped<C>(
  p: HeProgram,
  be: CkksBackend<C>,
  inputs: (C | null)[],
  opts: { workers: number; N: number; memoryBudget?: number; refresh?: (cts: (C | null)[]) => (C | null)[] },
): (C | null)[] {
  const budget = opts.memoryBudget ?? SERVER_MEMORY_BUDGET;
  const tensors = new Map<number, (C | null)[]>([[p.input, inputs]]);
  const stages = planStages(p);
  const lastStage = new Map<number, number>();
  stages.forEach((st, k) => st.steps.forEach((i) => stepSources(p.steps[i]).forEach((t) => lastStage.set(t, k))));
  // a program cut for client refreshes (as HEServer.evaluateBatch runs it): the stage that
  // starts at a refresh point first has its tensors refreshed (`refresh` gives the fresh copies)
  const refreshAt = new Map((p.refreshes ?? []).map((r) => [r.before, r.tensors]));
  stages.forEach((st, k) => {
    for (const { src } of refreshAt.get(st.steps[0]) ?? []) lastStage.set(src, Math.max(lastStage.get(src) ?? k, k));
  });
  stages.forEach((st, k) => {
    for (const { src, out } of refreshAt.get(st.steps[0]) ?? []) {
      if (!opts.refresh) throw new Error('internal: a program cut for --refresh client needs a refresh');
      tensors.set(out, opts.refresh(tensors.get(src)!));
    }
    runStage(p, be, st, tensors, { ...opts, memoryBudget: budget });
    for (const [t, last] of lastStage) {
      if (last === k && t !== p.output && tensors.has(t)) {
        for (const c of tensors.get(t)!) if (c) be.free(c);
        tensors.delete(t);
      }
    }
  });
  return tensors.get(p.output)!;
}

/**
 * One segment of a program cut for client refreshes, batch packing (what `hepoly serve` runs
 * per round): the stages of steps [from, to) on the tensors the segment starts from (the
 * input, or a refresh point's fresh copies); returns `keep` (the next refresh point's sources,
 * or the output). `given` stays the caller's (a kept tensor may be one of them); every other
 * ciphertext is freed once no later stage of the segment reads it.
 */
export function runBatchRange<C>(
  p: HeProgram,
  be: CkksBackend<C>,
  given: Map<number, (C | null)[]>,
  range: { from: number; to: number; keep: number[] },
  opts: { workers: number; N: number; memoryBudget?: number },
): Map<number, (C | null)[]> {
  const budget = opts.memoryBudget ?? SERVER_MEMORY_BUDGET;
  const tensors = new Map(given);
  const stages = planStages(p).filter((st) => st.steps[0] >= range.from && st.steps[0] < range.to);
  const keep = new Set(range.keep);
  const lastStage = new Map<number, number>();
  stages.forEach((st, k) => st.steps.forEach((i) => stepSources(p.steps[i]).forEach((t) => lastStage.set(t, k))));
  stages.forEach((st, k) => {
    runStage(p, be, st, tensors, { ...opts, memoryBudget: budget });
    for (const [t, last] of lastStage) {
      if (last !== k || keep.has(t) || given.has(t) || !tensors.has(t)) continue;
      for (const c of tensors.get(t)!) if (c) be.free(c);
      tensors.delete(t);
    }
  });
  const out = new Map<number, (C | null)[]>();
  for (const t of range.keep) {
    const cts = tensors.get(t);
    if (!cts) throw new Error(`internal: segment [${range.from}, ${range.to}) does not produce tensor ${t}`);
    out.set(t, cts);
  }
  // exported but read by no later stage of this segment, nor kept: not needed
  for (const [t, cts] of tensors) if (!keep.has(t) && !given.has(t)) for (const c of cts) if (c) be.free(c);
  return out;
}

/** One stage in this thread, group by group as the server's workers split it; its exports land in `tensors`. */
function runStage<C>(p: HeProgram, be: CkksBackend<C>, st: Stage, tensors: Map<number, (C | null)[]>, opts: { workers: number; N: number; memoryBudget: number }): void {
  const store: TensorStore<C> = { acquire: (t, i) => tensors.get(t)?.[i] ?? null, release: () => {} };
  for (const t of st.exports) tensors.set(t, new Array(size(p.tensors[t].shape)).fill(null));
  for (const group of channelGroups(p, st, be.topLevel, opts.N, opts.memoryBudget, opts.workers)) {
    for (const [t, m] of runStageGroup({ program: p, be, store, memoryBudget: opts.memoryBudget }, st, group)) {
      const arr = tensors.get(t)!;
      for (const [i, c] of m) arr[i] = c;
    }
  }
}
