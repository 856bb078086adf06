import { plan as planPackings, type PlanResult } from '../he/tiles/plan.js';
import { parseGoal, parseMemory } from '../he/tiles/optimizer.js';
import { HepolyError } from '../util/errors.js';

export interface PlanOptions {
  /** latency (one sample's time), throughput (time per sample) or memory (smallest peak) */
  goal?: string;
  /** memory limit: bytes, or text such as '8GiB' or '512MiB' (default 8 GiB) */
  memory?: string | number;
  /** also run each shown candidate on SEAL and report measured beside predicted */
  measure?: boolean;
  /** candidates to show (default 5) */
  top?: number;
  /** redo the node-seal micro-benchmark instead of using the cached one */
  calibrate?: boolean;
  /** log every compiler pass by name with what it did (he-plan --trace) */
  trace?: boolean;
  log?: (line: string) => void;
}

/** Ranks the packings of a checkpoint by the calibrated cost model; resolves to what `he-plan --json` prints. */
export async function plan(checkpoint: string, o: PlanOptions = {}): Promise<PlanResult> {
  const goal = parseGoal(o.goal);
  const memoryLimit = parseMemory(o.memory);
  if (o.top !== undefined && !(Number.isInteger(o.top) && o.top >= 1)) throw new HepolyError(`--top: expected a positive integer, found ${o.top}`);
  return planPackings({ checkpoint, goal, memoryLimit, measure: !!o.measure, top: o.top, recalibrate: !!o.calibrate, trace: !!o.trace, log: o.log });
}
