import type { Graph, WeightMap } from '../models/graph.js';
import type { Checkpoint } from '../train/checkpoint.js';
import type { HeProgram } from './program.js';
import type { LevelContext } from '../ops/types.js';
import type { CompilePass, CompileState } from './passes/pass.js';
import { refuseNonPolynomialPass } from './passes/refuse-non-polynomial.js';
import { foldTrainingPass } from './passes/fold-training.js';
import { lowerAffinePass } from './passes/lower-affine.js';
import { attributeLevelsPass } from './passes/attribute-levels.js';
import { checkLevelsPass } from './passes/check-levels.js';

/**
 * Graph + weights -> HE program, as an ordered list of named passes (src/he/passes/): check
 * that every layer is a polynomial, fold training-time parameterizations, lower every op to
 * affine expressions and the steps of src/he/program.ts (src/he/lower.ts), charge each layer
 * its levels, and check no layer spends more than its op's level cost.
 */

export interface CompileOptions {
  /** names the checkpoint in error messages */
  source?: string;
  /** receives one line per pass: its name and what it did */
  trace?: (line: string) => void;
  /** ranges.json of the checkpoint (power-softmax's reciprocal is fitted to a recorded range) */
  ranges?: LevelContext['ranges'];
}

export const COMPILE_PASSES: readonly CompilePass[] = [refuseNonPolynomialPass, foldTrainingPass, lowerAffinePass, attributeLevelsPass, checkLevelsPass];

export function compileProgram(graph: Graph, weights: WeightMap, opts: CompileOptions = {}): HeProgram {
  let state: CompileState = { graph, weights, program: null, source: opts.source ?? 'checkpoint', ranges: opts.ranges ?? null };
  for (const pass of COMPILE_PASSES) {
    const r = pass.run(state);
    state = r.state;
    opts.trace?.(`compile pass ${pass.name}: ${r.note}`);
  }
  return state.program!;
}

/** A checkpoint's program: named by its folder, with its recorded ranges (every command compiles a checkpoint this way). */
export function compileCheckpoint(ckpt: Pick<Checkpoint, 'graph' | 'weights' | 'dir' | 'ranges'>, opts: Pick<CompileOptions, 'trace'> = {}): HeProgram {
  return compileProgram(ckpt.graph, ckpt.weights, { source: ckpt.dir, ranges: ckpt.ranges, ...opts });
}

export { refuseNonPolynomial } from './passes/refuse-non-polynomial.js';
export { applyWeighted } from './expr.js';
