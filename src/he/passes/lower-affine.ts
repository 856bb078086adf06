import { Lowering } from '../lower.js';
import type { CompilePass } from './pass.js';

/**
 * Every op's `lowerHE` on affine expressions: batchnorm, pooling factors, polynomial
 * coefficients and biases fold into the neighbouring linear steps; only activations and the
 * output materialize ciphertexts (src/he/lower.ts).
 */
export const lowerAffinePass: CompilePass = {
  name: 'lower-affine',
  run(state) {
    const program = new Lowering(state.graph, state.weights, state.source, state.ranges ?? null).run();
    const count = (k: string) => program.steps.filter((s) => s.kind === k).length;
    return {
      state: { ...state, program },
      note: `${program.steps.length} steps (${count('linear')} linear, ${count('power')} power, ${count('dot')} dot, ${count('struct')} struct), depth ${program.depth}`,
    };
  },
};
