import type { HeProgram, Step } from '../program.js';
import type { Packing, PackingPlan } from './packing.js';
import { refuseUnsupported } from './packing.js';
import { SampleEvaluator, packSample, planSample, unpackTensor } from './sample.js';
import { sampleTiles, tileLayout } from '../tiles/tile-tensor.js';
import { size } from '../tensor-ops.js';

/**
 * Sample packing (LoLa / Gazelle): one sample's tensor over the slots of a few ciphertexts,
 * linear layers by the diagonal method with baby-step giant-step rotations
 * (src/he/packing/sample.ts, layout.ts, diagonals.ts).
 */

/** What the diagonal-method planner cannot lay out, known from the step alone. */
export function diagonalSupport(step: Step, program: HeProgram): true | string {
  // the diagonal method lays out linear maps, element-wise products and the struct ops;
  // a step of any other kind (a product of arbitrary element pairs) has no layout
  if (step.kind !== 'linear' && step.kind !== 'power' && step.kind !== 'struct') return `a ${(step as Step).kind} step (its elements pair up across the layout)`;
  if (step.out === program.output && step.kind === 'struct' && step.op.kind === 'globalsum') return 'a network whose output is a global pooling (it has no slots of its own)';
  return true;
}

export const samplePacking: Packing = {
  kind: 'sample',
  evaluator: 'sample',
  layout: "one sample's tensor over the slots of a few ciphertexts (channel planes, diagonal method)",
  heapGrowsWithM: false,
  supports: diagonalSupport,
  sizes: () => [1],
  plan(program, slots): PackingPlan {
    refuseUnsupported(samplePacking, program);
    const sample = planSample(program, slots);
    return { kind: 'sample', program, slots, samplesPerPass: 1, sample, stacked: null, rotationSteps: sample.rotationSteps };
  },
  run(plan, be) {
    const ev = new SampleEvaluator(plan.program, plan.sample!, be);
    return { run: (inputs) => ev.run(inputs as never[]), delete: () => ev.delete() };
  },
  pack: (plan, x) => packSample(plan.sample!, plan.program, x),
  unpack: (plan, outputs) => unpackTensor(plan.sample!, plan.program.output, outputs as Float64Array[]),
  tiles(plan) {
    const features = size(plan.program.inputShape);
    return plan.program.inputShape.length === 3 ? tileLayout([1, features], [1, plan.slots]) : sampleTiles(features, plan.slots);
  },
};
