import type { HeParams } from '../params.js';
import type { HeProgram } from '../program.js';
import type { SamplePlan } from '../packing/sample.js';
import { calibration } from './calibrate.js';
import { passCost, predict, type PassShape } from './cost.js';

/**
 * `he-validate --packing auto`: of the two packings the server runs, the one the calibrated
 * cost model predicts finishes `n` samples sooner on `workers` threads (batch: passes of up
 * to `slots` samples, channel groups spread over the threads; sample: samples spread over them).
 */
export async function chooseServerPacking(
  program: HeProgram,
  params: HeParams,
  plan: SamplePlan,
  n: number,
  workers: number,
): Promise<{ packing: 'batch' | 'sample'; reason: string }> {
  const slots = params.polyModulusDegree / 2;
  const calib = await calibration(params);
  const batch: PassShape = { kind: 'batch', params, program, plan: null, samplesPerPass: slots, workers };
  const sample: PassShape = { kind: 'sample', params, program, plan, samplesPerPass: 1 };
  const batchMs = (Math.ceil(n / slots) * predict(batch, passCost(batch), calib).latencyMs) / workers;
  const sampleMs = (Math.ceil(n / workers) * predict(sample, passCost(sample), calib).latencyMs);
  const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
  return batchMs <= sampleMs
    ? { packing: 'batch', reason: `cost model (he-plan): ${s(batchMs)} predicted vs ${s(sampleMs)} for sample packing` }
    : { packing: 'sample', reason: `cost model (he-plan): ${s(sampleMs)} predicted vs ${s(batchMs)} for batch packing` };
}
