import { loadCheckpoint } from '../../train/checkpoint.js';
import { heldOutSplit } from '../../train/evaluate.js';
import { compileProgram } from '../compile.js';
import { chooseParams, type HeParams } from '../params.js';
import type { HeProgram } from '../program.js';
import { calibrate } from '../validate.js';
import { size } from '../tensor-ops.js';
import { type Calibration, calibration } from './calibrate.js';
import { type Goal, type Ranked, candidates, rank } from './optimizer.js';
import { type PassMeasurement, type PassRequest, measurePass } from './measure.js';
import { stackInputs } from './stacked.js';

/**
 * `hepoly he-plan`: the packing candidates of a checkpoint, ranked for a goal under a memory
 * limit, each with its predicted latency, time per sample and memory, and with `measure` the
 * same pass run for real on one thread in a fresh SEAL heap.
 */

export interface PlanOptions {
  checkpoint: string;
  goal: Goal;
  memoryLimit: number;
  measure?: boolean;
  /** how many candidates to show (and measure) */
  top?: number;
  recalibrate?: boolean;
  log?: (line: string) => void;
}

export interface PlanRow {
  name: string;
  ring: number;
  samplesPerPass: number;
  ciphertextsIn: number;
  rotationKeys: number;
  counts: Ranked['cost']['counts'];
  predicted: { latencyMs: number; amortizedMs: number; memoryBytes: number; setupMs: number; keyBytes: number; poolBytes: number };
  /** latency: the last of `passes` passes in one fresh worker; firstPassMs: the first's */
  measured: { latencyMs: number; amortizedMs: number; memoryBytes: number; counts: PassMeasurement['counts']; firstPassMs: number; passes: number } | null;
}

export interface PlanResult {
  checkpoint: string;
  goal: Goal;
  memoryLimit: number;
  params: HeParams;
  rows: PlanRow[];
}

/** --measure runs a second (warm) pass only for candidates predicted under this */
const WARM_PASS_LIMIT_MS = 60_000;

export async function planProgram(program: HeProgram, params: HeParams, goal: Goal, memoryLimit: number, opts: { recalibrate?: boolean; log?: (s: string) => void } = {}): Promise<Ranked[]> {
  const cands = candidates(program, params);
  const calibs = new Map<number, Calibration>();
  for (const N of new Set(cands.map((c) => c.shape.params.polyModulusDegree))) {
    const p = cands.find((c) => c.shape.params.polyModulusDegree === N)!.shape.params;
    calibs.set(N, await calibration(p, { force: opts.recalibrate, log: opts.log }));
  }
  return rank(cands, (p) => calibs.get(p.polyModulusDegree)!, goal, memoryLimit);
}

export async function plan(opts: PlanOptions): Promise<PlanResult> {
  const ckpt = loadCheckpoint(opts.checkpoint);
  const program = compileProgram(ckpt.graph, ckpt.weights, { source: ckpt.dir });
  const split = await heldOutSplit(ckpt);
  const per = size(program.inputShape);
  const maxAbs = calibrate(program, split.x, Math.min(split.count, 32));
  const params = chooseParams({ depth: program.depth, maxAbs });
  const ranked = (await planProgram(program, params, opts.goal, opts.memoryLimit, opts)).slice(0, opts.top ?? 5);
  const rows: PlanRow[] = [];
  for (const c of ranked) {
    let measured: PlanRow['measured'] = null;
    if (opts.measure) {
      opts.log?.(`measuring ${c.name} ...`);
      const slots = c.shape.params.polyModulusDegree / 2;
      const req: PassRequest =
        c.shape.kind === 'batch'
          ? { kind: 'batch', params: c.shape.params, program: c.shape.program, x: Float64Array.from(split.x.subarray(0, Math.min(split.count, slots) * per)), count: Math.min(split.count, slots) }
          : {
              kind: c.shape.kind,
              params: c.shape.params,
              program: c.shape.program,
              x: c.stacked ? stackInputs(c.stacked, split.x, per, Math.min(c.shape.samplesPerPass, split.count)) : Float64Array.from(split.x.subarray(0, per)),
              count: 1,
            };
      // a second pass where it is cheap: the first also grows the fresh heap's memory pools
      const passes = c.shape.kind !== 'batch' && c.prediction.latencyMs < WARM_PASS_LIMIT_MS ? 2 : 1;
      const m = await measurePass({ ...req, passes }, { inWorker: true });
      const first = m.latencyMs - m.evaluateMs + m.firstEvaluateMs;
      measured = { latencyMs: m.latencyMs, amortizedMs: m.latencyMs / c.shape.samplesPerPass, memoryBytes: m.heapBytes, counts: m.counts, firstPassMs: first, passes };
    }
    rows.push({
      name: c.name,
      ring: c.shape.params.polyModulusDegree,
      samplesPerPass: c.shape.samplesPerPass,
      ciphertextsIn: c.cost.inputCiphertexts,
      rotationKeys: c.cost.rotationKeys,
      counts: c.cost.counts,
      predicted: { ...c.prediction, keyBytes: c.cost.keyBytes, poolBytes: c.cost.poolBytes },
      measured,
    });
  }
  return { checkpoint: ckpt.dir, goal: opts.goal, memoryLimit: opts.memoryLimit, params, rows };
}
