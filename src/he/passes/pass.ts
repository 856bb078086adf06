import type { Graph, WeightMap } from '../../models/graph.js';
import type { HeProgram } from '../program.js';
import type { LevelContext } from '../../ops/types.js';

/**
 * The graph-to-program compiler as an ordered list of named passes (EVA's shape: transform
 * passes, then checker passes). Each pass is one small file in src/he/passes/; the runner
 * in src/he/compile.ts reports every pass by name to `CompileOptions.trace`.
 */

/** What flows through the passes: the network until it is lowered, then the program too. */
export interface CompileState {
  graph: Graph;
  weights: WeightMap;
  /** set by the lowering pass */
  program: HeProgram | null;
  /** names the checkpoint in error messages */
  source: string;
  /** ranges.json (power-softmax's reciprocal is fitted to a recorded range) */
  ranges?: LevelContext['ranges'];
}

export interface CompilePass {
  name: string;
  /** one line for --trace: what the pass did */
  run(state: CompileState): { state: CompileState; note: string };
}

/** The program, once a pass needs it (a pass ordered before the lowering is a bug). */
export function programOf(state: CompileState, pass: string): HeProgram {
  if (!state.program) throw new Error(`compile pass ${pass} runs before the graph is lowered`);
  return state.program;
}
