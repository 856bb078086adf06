import { opOf } from '../../ops/registry.js';
import { type CompilePass, programOf } from './pass.js';

/**
 * Checker: no layer spends more levels than its op's `levelCost` says (the figure
 * `hepoly summary` and parameter choice read), so the cost model never under-counts. A layer
 * may spend fewer (a trained polynomial whose top coefficient is exactly 0); the note says so.
 */
export const checkLevelsPass: CompilePass = {
  name: 'check-levels',
  run(state) {
    const program = programOf(state, 'check-levels');
    const cheaper: string[] = [];
    for (const budget of program.layers) {
      const node = state.graph.nodes.find((n) => n.name === budget.node)!;
      const opCost = opOf(node).levelCost(node.layer, { node: node.name, ranges: null });
      if (opCost === null) continue;
      // an op that folds into the next layer (levelCost 0) has none when it is the graph's
      // output: the logits are materialized by their own linear step, one level (e.g. a
      // network that ends in global_avgpool)
      const cost = node.name === state.graph.output && opCost === 0 ? 1 : opCost;
      if (budget.levels > cost) {
        throw new Error(`compiler: layer ${node.name} (${node.layer.op}) spends ${budget.levels} levels but its op's levelCost says ${cost} (src/ops/${opOf(node).family}.ts and the lowering disagree)`);
      }
      if (budget.levels < cost) cheaper.push(`${node.name} ${budget.levels}/${cost}`);
    }
    return { state, note: cheaper.length ? `within the ops' costs; cheaper: ${cheaper.join(', ')}` : "every layer spends its op's level cost" };
  },
};
