import type { Graph, WeightMap } from './graph.js';
import { weightKey } from './graph.js';
import { diracDeltaValues } from './tf-interpreter.js';

/**
 * Rewrites training-time parameterizations into the plain layers inference needs, so the
 * HE evaluator (and exporters) see one conv where training had two terms:
 *   dirac conv: kernel' = kernel + alpha * identity, `alpha` dropped.
 */
export function foldForInference(graph: Graph, weights: WeightMap): { graph: Graph; weights: WeightMap } {
  const out: WeightMap = new Map(weights);
  const nodes = graph.nodes.map((node) => {
    const L = node.layer;
    if (L.op !== 'conv2d' || !L.dirac) return node;
    const k = weights.get(weightKey(node.name, 'kernel'))!;
    const alpha = weights.get(weightKey(node.name, 'alpha'))!.data;
    const delta = diracDeltaValues(k.shape);
    const cout = k.shape[3];
    const data = Float32Array.from(k.data, (v, i) => v + delta[i] * alpha[i % cout]);
    out.set(weightKey(node.name, 'kernel'), { shape: k.shape, data });
    out.delete(weightKey(node.name, 'alpha'));
    const { dirac: _dirac, ...plain } = L;
    return { ...node, layer: plain };
  });
  return { graph: { ...graph, nodes }, weights: out };
}
