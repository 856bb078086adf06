import { foldForInference } from '../../models/fold.js';
import type { CompilePass } from './pass.js';

/** Training-time parameterizations become plain layers (a Dirac conv alpha*I + W is one conv). */
export const foldTrainingPass: CompilePass = {
  name: 'fold-training',
  run(state) {
    const { graph, weights } = foldForInference(state.graph, state.weights);
    const changed = graph.nodes.filter((n, i) => n !== state.graph.nodes[i]).map((n) => n.name);
    return { state: { ...state, graph, weights }, note: changed.length ? `folded ${changed.join(', ')}` : 'nothing to fold' };
  },
};
