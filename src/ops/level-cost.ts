import type { Graph, GraphNode } from '../models/graph.js';
import { opOf } from './registry.js';
import type { LevelContext } from './types.js';

/**
 * Levels a graph node spends under CKKS, as the compiler spends them: its op's `levelCost`
 * face, plus the one level the graph's output pays when a scale is still pending there. Pooling
 * (1/size^2) and normalization (batchnorm's affine map) cost nothing because their factor folds
 * into the next linear layer; when no linear layer follows before the output, the compiler
 * materializes the factor with one plaintext product, charged to the output node (a network
 * that ends in global_avgpool). Structure ops (flatten, pad, add) carry no factor.
 * Null: unknown until ranges are recorded; Infinity: not a polynomial.
 */
export function nodeLevelCost(graph: Graph, node: GraphNode, ranges: LevelContext['ranges']): number | null {
  const cost = opOf(node).levelCost(node.layer, { node: node.name, ranges });
  if (cost !== 0 || node.name !== graph.output) return cost;
  return pendingFactorAtOutput(graph) ? 1 : 0;
}

/** Whether the free ops that end the graph leave a factor no linear layer absorbs. */
function pendingFactorAtOutput(graph: Graph): boolean {
  const byName = new Map(graph.nodes.map((n) => [n.name, n]));
  let pending = false;
  for (let node = byName.get(graph.output); node; node = node.inputs.length === 1 ? byName.get(node.inputs[0]) : undefined) {
    const def = opOf(node);
    const cost = def.levelCost(node.layer, { node: node.name, ranges: null });
    // a linear layer absorbs the factors after it; any other op that spends levels materializes its output
    if (cost !== 0) return def.kind === 'linear' ? false : pending;
    if (def.kind === 'pooling' || def.kind === 'normalization') pending = true;
  }
  return pending;
}
