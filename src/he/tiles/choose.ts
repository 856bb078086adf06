import type { HeParams } from '../params.js';
import type { HeProgram } from '../program.js';
import type { SamplePlan } from '../packing/sample.js';
import { calibration } from './calibrate.js';
import { passCost, predict, type PassShape } from './cost.js';
import { type Candidate, interleavedCandidates, stackedCandidates } from './optimizer.js';
import { nextPow2 } from '../packing/layout.js';
import type { StackedProgram } from './stacked.js';

/**
 * `he-validate --packing auto`: of the packings the server runs (batch, sample, and stacked
 * or interleaved xM, which the server runs as sample packing of the M-sample program), the one the
 * calibrated cost model predicts finishes `n` samples sooner on `workers` threads. Batch
 * passes spread their channel groups over the threads; sample and stacked passes are
 * spread over them whole. A stacked point is only offered where its predicted SEAL heap
 * leaves a worker room under wasm's 4 GiB (`heapLimit`).
 */

export type ServerPacking = 'batch' | 'sample' | 'stacked' | 'interleaved';

export interface PackingDecision {
  packing: ServerPacking;
  /** stacked: the M-sample program and its plan */
  stacked: StackedProgram | null;
  plan: SamplePlan | null;
  reason: string;
}

export async function chooseServerPacking(
  program: HeProgram,
  params: HeParams,
  plan: SamplePlan,
  n: number,
  workers: number,
  opts: { kinds?: ServerPacking[]; heapLimit?: number } = {},
): Promise<PackingDecision | null> {
  const kinds = opts.kinds ?? ['batch', 'sample', 'stacked', 'interleaved'];
  const slots = params.polyModulusDegree / 2;
  const calib = await calibration(params);
  const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
  type Option = { name: string; ms: number; decision: Omit<PackingDecision, 'reason'> };
  const batch: PassShape = { kind: 'batch', params, program, plan: null, samplesPerPass: slots, workers };
  const sample: PassShape = { kind: 'sample', params, program, plan, samplesPerPass: 1 };
  const options: Option[] = [];
  if (kinds.includes('batch')) {
    options.push({ name: 'batch', ms: (Math.ceil(n / slots) * predict(batch, passCost(batch), calib).latencyMs) / workers, decision: { packing: 'batch', stacked: null, plan: null } });
  }
  if (kinds.includes('sample')) {
    options.push({ name: 'sample', ms: Math.ceil(n / workers) * predict(sample, passCost(sample), calib).latencyMs, decision: { packing: 'sample', stacked: null, plan } });
  }
  const multi = (kind: 'stacked' | 'interleaved', cands: Candidate[]) => {
    for (const c of cands) {
      const pred = predict(c.shape, c.cost, calib);
      const passes = Math.ceil(n / c.shape.samplesPerPass);
      options.push({ name: `${kind} x${c.shape.samplesPerPass}`, ms: Math.ceil(passes / workers) * pred.latencyMs, decision: { packing: kind, stacked: c.stacked, plan: c.shape.plan } });
    }
  };
  // more samples per pass than the run has would only carry zeros
  // the heap limit also ends each search early: planning the larger M is most of auto's start-up
  if (kinds.includes('stacked') && n > 1) multi('stacked', stackedCandidates(program, params, Math.min(nextPow2(n), 64), opts.heapLimit));
  if (kinds.includes('interleaved') && n > 1) multi('interleaved', interleavedCandidates(program, params, nextPow2(n), opts.heapLimit));
  if (!options.length) return null;
  options.sort((a, b) => a.ms - b.ms);
  const [best, ...rest] = options;
  const others = rest.length ? `; ${rest.map((o) => `${o.name} ${s(o.ms)}`).join(', ')}` : '';
  return { ...best.decision, reason: `cost model (he-plan): ${best.name} ${s(best.ms)} predicted for ${n} samples on ${workers} worker${workers === 1 ? '' : 's'}${others}` };
}
