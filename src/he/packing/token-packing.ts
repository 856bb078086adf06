import type { Packing, PackingPlan } from './packing.js';
import { runBatchGrouped } from '../tiles/batch-pass.js';
import { tileLayout } from '../tiles/tile-tensor.js';
import { foldTokens, packTokens, tokenFoldProblem, unpackTokens } from './token-fold.js';
import { HepolyError } from '../../util/errors.js';

/**
 * Token packing: a transformer's batch program folded onto token blocks (slot t*S + s holds
 * token t of sample s, one ciphertext per feature), evaluated by the batch evaluator; other
 * tokens are read through rotations by multiples of S (src/he/packing/token-fold.ts).
 */
export const tokenPacking: Packing = {
  kind: 'token',
  evaluator: 'batch',
  layout: 'slot t*S + s holds token t of sample s (S = slots / tokens); one ciphertext per feature, other tokens by rotation',
  heapGrowsWithM: false,
  // the fold is of the whole program (token rows, gathers only): slot counts are powers of two
  supports: (_step, program) => tokenFoldProblem(program, 1 << 30),
  sizes(program, slots) {
    try {
      return [foldTokens(program, slots).stride];
    } catch (e) {
      if (e instanceof HepolyError) return [];
      throw e;
    }
  },
  plan(program, slots): PackingPlan {
    const fold = foldTokens(program, slots);
    return { kind: 'token', program: fold.program, slots, samplesPerPass: fold.stride, sample: null, stacked: null, rotationSteps: fold.rotationSteps, fold };
  },
  run(plan, be, opts = {}) {
    return {
      run: (inputs) => runBatchGrouped(plan.program, be, inputs, { workers: opts.workers ?? 1, N: plan.slots * 2, memoryBudget: opts.memoryBudget }),
      delete: () => {},
    };
  },
  pack: (plan, x, count) => packTokens(plan.fold!, x, count, plan.slots),
  unpack: (plan, outputs, count) => unpackTokens(plan.fold!, outputs, plan.program.classes, count),
  tiles: (plan) => tileLayout([plan.fold!.stride, plan.fold!.tokens, plan.program.inputShape[0]], [plan.fold!.stride, plan.fold!.tokens, 1]),
};
