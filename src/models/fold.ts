import type { Graph, WeightMap } from './graph.js';
import { opOf } from '../ops/registry.js';

/**
 * Rewrites training-time parameterizations into the plain layers inference needs, so the
 * HE evaluator (and exporters) see one conv where training had two terms: each op's
 * `inferenceFold` face (the Dirac conv: kernel' = kernel + alpha * identity, `alpha` dropped).
 */
export function foldForInference(graph: Graph, weights: WeightMap): { graph: Graph; weights: WeightMap } {
  let out: WeightMap = new Map(weights);
  const nodes = graph.nodes.map((node) => {
    const folded = opOf(node).inferenceFold?.(node, out) ?? null;
    if (!folded) return node;
    out = folded.weights;
    return { ...node, layer: folded.layer };
  });
  return { graph: { ...graph, nodes }, weights: out };
}
