import type { Packing, PackingPlan } from './packing.js';
import { packBatch, unpackBatch } from './batch.js';
import { runBatchGrouped } from '../tiles/batch-pass.js';
import { batchTiles } from '../tiles/tile-tensor.js';
import { size } from '../tensor-ops.js';

/**
 * Batch packing (CryptoNets): slot s of every ciphertext is sample s, one ciphertext per tensor
 * element; linear layers are scalar products, no rotations (src/he/packing/batch.ts).
 */
export const batchPacking: Packing = {
  kind: 'batch',
  evaluator: 'batch',
  layout: 'slot s of every ciphertext is sample s; one ciphertext per tensor element',
  heapGrowsWithM: false,
  supports: () => true,
  sizes: (_program, slots) => [slots],
  plan(program, slots): PackingPlan {
    return { kind: 'batch', program, slots, samplesPerPass: slots, sample: null, stacked: null, rotationSteps: [] };
  },
  run(plan, be, opts = {}) {
    return {
      run: (inputs) => runBatchGrouped(plan.program, be, inputs, { workers: opts.workers ?? 1, N: plan.slots * 2, memoryBudget: opts.memoryBudget }),
      delete: () => {},
    };
  },
  pack: (plan, x, count) => packBatch(x, size(plan.program.inputShape), 0, count, plan.slots),
  unpack: (plan, outputs, count) => unpackBatch(outputs, plan.program.classes, count),
  tiles: (plan) => batchTiles(plan.slots, size(plan.program.inputShape), plan.slots),
};
