import type { HeParams } from '../params.js';
import type { HeProgram } from '../program.js';
import type { SamplePlan } from '../packing/sample.js';
import { type PackingKind, type PackingPlan, PACKINGS, packingOf } from '../packing/index.js';
import { calibration } from './calibrate.js';
import { passCost, predict, type PassShape } from './cost.js';
import { packingCandidates } from './optimizer.js';
import { nextPow2 } from '../packing/layout.js';
import type { StackedProgram } from './stacked.js';

/**
 * `he-validate --packing auto`: of the registered packings (src/he/packing/index.ts), the
 * point the calibrated cost model predicts finishes `n` samples sooner on `workers` threads.
 * Batch passes spread their channel groups over the threads; the sample evaluator's passes are
 * spread over them whole. An M-sample point is only offered where its predicted SEAL heap
 * leaves a worker room under wasm's 4 GiB (`heapLimit`).
 */

/** @deprecated the one packing-kind type is PackingKind (src/he/packing/packing.ts) */
export type ServerPacking = PackingKind;

export interface PackingDecision {
  packing: PackingKind;
  /** stacked and interleaved: the M-sample program and its plan */
  stacked: StackedProgram | null;
  plan: SamplePlan | null;
  /** the whole plan (client side: the sample plan of an M-sample point is client-only) */
  chosen: PackingPlan;
  reason: string;
}

export async function chooseServerPacking(
  program: HeProgram,
  params: HeParams,
  plan: SamplePlan,
  n: number,
  workers: number,
  opts: { kinds?: readonly PackingKind[]; heapLimit?: number } = {},
): Promise<PackingDecision | null> {
  const slots = params.polyModulusDegree / 2;
  const calib = await calibration(params);
  const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
  // more samples per pass than the run has would only carry zeros; the heap limit also ends
  // each search early: planning the larger M is most of auto's start-up
  const cands = packingCandidates(program, params, { kinds: opts.kinds ?? PACKINGS.map((p) => p.kind), maxM: nextPow2(n), heapCap: opts.heapLimit, single: plan, workers });
  const options = cands.map((c) => {
    const ms = runMs(c.kind, predict(c.shape, c.cost, calib).latencyMs, c.shape.samplesPerPass, n, workers);
    const chosen: PackingPlan = { kind: c.kind, program: c.shape.program, slots, samplesPerPass: c.shape.samplesPerPass, sample: c.shape.plan, stacked: c.stacked, rotationSteps: c.shape.plan?.rotationSteps ?? [] };
    return { name: c.name, ms, chosen };
  });
  if (!options.length) return null;
  options.sort((a, b) => a.ms - b.ms);
  const [best, ...rest] = options;
  const others = rest.length ? `; ${rest.map((o) => `${o.name} ${s(o.ms)}`).join(', ')}` : '';
  const c = best.chosen;
  return { packing: c.kind, stacked: c.stacked, plan: c.sample, chosen: c, reason: `cost model (he-plan): ${best.name} ${s(best.ms)} predicted for ${n} samples on ${workers} worker${workers === 1 ? '' : 's'}${others}` };
}

/**
 * Milliseconds `n` samples take on `workers` threads when one pass of `samplesPerPass` takes
 * `latencyMs`: batch passes split their channel groups over the threads; the sample
 * evaluator's passes are spread over them whole.
 */
function runMs(kind: PackingKind, latencyMs: number, samplesPerPass: number, n: number, workers: number): number {
  const passes = Math.ceil(n / samplesPerPass);
  return packingOf(kind).evaluator === 'batch' ? (passes * latencyMs) / workers : Math.ceil(passes / workers) * latencyMs;
}

/**
 * Seconds `n` samples take with a plan at `params` by the calibrated cost model: a dry run of
 * the packing's evaluator (a program cut for client refreshes: segment by segment), timed with
 * this machine's per-operation costs. The one estimate he-validate and he-plan make.
 */
export async function predictSeconds(plan: PackingPlan, params: HeParams, n: number, workers: number): Promise<number> {
  const shape: PassShape = { kind: plan.kind, params, program: plan.program, plan: plan.sample, samplesPerPass: plan.samplesPerPass, ...(packingOf(plan.kind).evaluator === 'batch' ? { workers } : {}) };
  const latencyMs = predict(shape, passCost(shape), await calibration(params)).latencyMs;
  return runMs(plan.kind, latencyMs, plan.samplesPerPass, n, workers) / 1000;
}
