import { opOf } from '../../ops/registry.js';
import { nodeLevelCost } from '../../ops/level-cost.js';
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
      // the op's levelCost, plus the output's pending factor (a network that ends in
      // global_avgpool): the same figure hepoly summary prints (src/ops/level-cost.ts)
      const cost = nodeLevelCost(state.graph, node, null);
      if (cost === null) continue;
      if (budget.levels > cost) {
        throw new Error(`compiler: layer ${node.name} (${node.layer.op}) spends ${budget.levels} levels but its op's levelCost says ${cost} (src/ops/${opOf(node).family}.ts and the lowering disagree)`);
      }
      if (budget.levels < cost) cheaper.push(`${node.name} ${budget.levels}/${cost}`);
    }
    return { state, note: cheaper.length ? `within the ops' costs; cheaper: ${cheaper.join(', ')}` : "every layer spends its op's level cost" };
  },
};
