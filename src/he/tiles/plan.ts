import { loadCheckpoint } from '../../train/checkpoint.js';
import { reportProgress } from '../../util/progress-event.js';
import { heldOutSplit } from '../../train/evaluate.js';
import { compileCheckpoint } from '../compile.js';
import type { HeParams } from '../params.js';
import type { HeProgram } from '../program.js';
import { size } from '../tensor-ops.js';
import { type Calibration, calibration } from './calibrate.js';
import { type Candidate, type Goal, type Ranked, candidates, rank } from './optimizer.js';
import { type ChainState, runChainPasses } from '../passes/chain.js';
import { scalesPass } from '../passes/scales.js';
import { chooseParamsPass } from '../passes/choose-params.js';
import { checkChainPass } from '../passes/check-chain.js';
import { segmentRefreshPass } from '../passes/segment-refresh.js';
import { stackInterleavePass } from '../passes/stack-interleave.js';
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
  /** log every compiler pass by name with what it did (`he-plan --trace`) */
  trace?: boolean;
}

export interface PlanRow {
  name: string;
  ring: number;
  samplesPerPass: number;
  ciphertextsIn: number;
  rotationKeys: number;
  counts: Ranked['cost']['counts'];
  predicted: { latencyMs: number; amortizedMs: number; memoryBytes: number; setupMs: number; keyBytes: number; poolBytes: number };
  /**
   * latency: the fastest warm pass of `passes` in one fresh worker; firstPassMs: the first's.
   * threadSpeed: the speed probe of the planning thread over that of the measuring thread just
   * before the reported pass (0.75: the measuring thread ran 25% slower, see calibrate.ts);
   * latency / (predicted / threadSpeed) is the model's error at equal speed.
   */
  measured: { latencyMs: number; amortizedMs: number; memoryBytes: number; counts: PassMeasurement['counts']; firstPassMs: number; passes: number; threadSpeed: number } | null;
}

export interface PlanResult {
  checkpoint: string;
  goal: Goal;
  memoryLimit: number;
  params: HeParams;
  /** the compiler's passes after lowering, in order, with what each did */
  passes: { pass: string; note: string }[];
  rows: PlanRow[];
}

/** From the lowered program to costed packings: the passes he-plan runs (src/he/passes/). */
export const PLAN_PASSES = [scalesPass, chooseParamsPass, segmentRefreshPass, checkChainPass, stackInterleavePass] as const;

/** --measure runs warm passes only for candidates predicted under this */
const WARM_PASS_LIMIT_MS = 60_000;
/** ... and as many (1 to 3) as fit in this */
const WARM_PASS_BUDGET_MS = 20_000;

/**
 * Passes --measure runs in one fresh worker: the first grows the heap's memory pools (a
 * serving server pays that once), and of the warm ones after it the fastest is reported (see
 * PassRequest.passes).
 */
export function measuredPasses(predictedMs: number): number {
  if (!(predictedMs < WARM_PASS_LIMIT_MS)) return 1;
  return 1 + Math.max(1, Math.min(3, Math.floor(WARM_PASS_BUDGET_MS / Math.max(predictedMs, 1))));
}

/** The ranked candidates, and the calibration of each ring they were predicted with (at the machine's speed then). */
export async function planProgram(
  program: HeProgram,
  params: HeParams,
  goal: Goal,
  memoryLimit: number,
  opts: { recalibrate?: boolean; log?: (s: string) => void; candidates?: Candidate[] } = {},
): Promise<{ ranked: Ranked[]; calibs: Map<number, Calibration> }> {
  const cands = opts.candidates ?? candidates(program, params);
  const calibs = new Map<number, Calibration>();
  for (const N of new Set(cands.map((c) => c.shape.params.polyModulusDegree))) {
    const p = cands.find((c) => c.shape.params.polyModulusDegree === N)!.shape.params;
    calibs.set(N, await calibration(p, { force: opts.recalibrate, log: opts.log }));
  }
  return { ranked: rank(cands, (p) => calibs.get(p.polyModulusDegree)!, goal, memoryLimit), calibs };
}

export async function plan(opts: PlanOptions): Promise<PlanResult> {
  const ckpt = loadCheckpoint(opts.checkpoint);
  const trace = opts.trace ? opts.log : undefined;
  const program = compileCheckpoint(ckpt, { trace });
  const split = await heldOutSplit(ckpt);
  const per = size(program.inputShape);
  const start: ChainState = { program, inputs: split.x, count: split.count, maxAbs: null, params: null, candidates: null };
  const { state, notes } = runChainPasses(PLAN_PASSES, start, trace);
  const params = state.params!;
  const { ranked: all, calibs } = await planProgram(program, params, opts.goal, opts.memoryLimit, { ...opts, candidates: state.candidates! });
  const ranked = all.slice(0, opts.top ?? 5);
  const rows: PlanRow[] = [];
  for (const c of ranked) {
    let measured: PlanRow['measured'] = null;
    if (opts.measure) {
      opts.log?.(`measuring ${c.name} ...`);
      reportProgress({ stage: 'measure', done: rows.length, total: ranked.length, unit: 'candidates', detail: `now ${c.name}` });
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
      const passes = measuredPasses(c.prediction.latencyMs);
      const m = await measurePass({ ...req, passes }, { inWorker: true });
      const first = m.latencyMs - m.evaluateMs + m.firstEvaluateMs;
      const planProbe = calibs.get(c.shape.params.polyModulusDegree)?.probeMs;
      const threadSpeed = planProbe && m.probeMs > 0 ? planProbe / m.probeMs : 1;
      measured = { latencyMs: m.latencyMs, amortizedMs: m.latencyMs / c.shape.samplesPerPass, memoryBytes: m.heapBytes, counts: m.counts, firstPassMs: first, passes, threadSpeed };
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
  return { checkpoint: ckpt.dir, goal: opts.goal, memoryLimit: opts.memoryLimit, params, passes: notes, rows };
}
