import type { Packing, PackingPlan } from './packing.js';
import { refuseUnsupported } from './packing.js';
import { SampleEvaluator, packSample, planSample, unpackTensor } from './sample.js';
import { nextPow2 } from './layout.js';
import { diagonalSupport } from './sample-packing.js';
import { type StackOrder, stackForSlots, stackInputs, unstackOutputs } from '../tiles/stacked.js';
import { interleavedTiles, stackedTiles } from '../tiles/tile-tensor.js';
import { size } from '../tensor-ops.js';

/**
 * Stacked and interleaved packing: M samples share every ciphertext. The program is rewritten
 * for M samples (src/he/tiles/stacked.ts) and evaluated by the sample-packing evaluator
 * unchanged: `block` stacks images in the channel dimension and vectors in blocks of slots,
 * `interleave` puts the M samples innermost (runs of M slots per element).
 */

/** Most samples per ciphertext the search tries for vectors and for images (stacked), and interleaved. */
const MAX_STACK_VECTOR = 64;
const MAX_STACK_IMAGE = 8;
const MAX_INTERLEAVE = 256;

function powersOfTwo(from: number, limit: number): number[] {
  const r: number[] = [];
  for (let m = from; m <= limit; m *= 2) r.push(m);
  return r;
}

function multiSample(kind: 'stacked' | 'interleaved', order: StackOrder, layout: string, maxM: (features: number, image: boolean, slots: number) => number): Packing {
  const packing: Packing = {
    kind,
    evaluator: 'sample',
    layout,
    heapGrowsWithM: true,
    supports: diagonalSupport,
    sizes: (program, slots, limit) => powersOfTwo(2, Math.min(limit, maxM(size(program.inputShape), program.inputShape.length === 3, slots))),
    plan(program, slots, m): PackingPlan {
      refuseUnsupported(packing, program);
      const stacked = stackForSlots(program, m, slots, order);
      const sample = planSample(stacked.program, slots);
      return { kind, program: stacked.program, slots, samplesPerPass: m, sample, stacked, rotationSteps: sample.rotationSteps };
    },
    run(plan, be) {
      const ev = new SampleEvaluator(plan.program, plan.sample!, be);
      return { run: (inputs) => ev.run(inputs as never[]), delete: () => ev.delete() };
    },
    pack: (plan, x, count) => packSample(plan.sample!, plan.program, stackInputs(plan.stacked!, x, size(plan.stacked!.base.inputShape), count)),
    unpack: (plan, outputs, count) => unstackOutputs(plan.stacked!, unpackTensor(plan.sample!, plan.program.output, outputs as Float64Array[]), count),
    tiles(plan) {
      const features = size(plan.stacked!.base.inputShape);
      const m = plan.samplesPerPass;
      return order === 'interleave' ? interleavedTiles(features, plan.slots, m) : stackedTiles(m, features, plan.slots, m);
    },
  };
  return packing;
}

export const stackedPacking = multiSample(
  'stacked',
  'block',
  'M samples per ciphertext in blocks (images: stacked in the channel dimension), evaluated as sample packing of the M-sample program',
  (features, image, slots) => (image ? MAX_STACK_IMAGE : Math.min(MAX_STACK_VECTOR, slots / nextPow2(features))),
);

export const interleavedPacking = multiSample(
  'interleaved',
  'interleave',
  'M samples innermost: element e of sample s at slot e*M + s of the sample layouts',
  (_features, _image, slots) => Math.min(MAX_INTERLEAVE, slots / 2),
);
