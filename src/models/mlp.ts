import type { ModelConfig } from '../recipe/schema.js';
import { type Graph, type GraphNode, INPUT } from './graph.js';
import { toActivationSpec } from './activation.js';

type MlpConfig = Extract<ModelConfig, { kind: 'mlp' }>;

/** dense -> [batchnorm] -> activation per hidden size, then a dense classifier head. */
export function buildMlp(cfg: MlpConfig, inputShape: number[], classes: number): Graph {
  const nodes: GraphNode[] = [];
  let prev = INPUT;
  const push = (node: Omit<GraphNode, 'inputs'>) => {
    nodes.push({ ...node, inputs: [prev] });
    prev = node.name;
  };
  if (inputShape.length !== 1) push({ name: 'flatten', layer: { op: 'flatten' } });
  cfg.hidden.forEach((units, i) => {
    push({ name: `dense${i + 1}`, layer: { op: 'dense', units, bias: !cfg.batchnorm } });
    if (cfg.batchnorm) push({ name: `bn${i + 1}`, layer: { op: 'batchnorm', momentum: 0.9, epsilon: 1e-3 } });
    push({ name: `act${i + 1}`, layer: { op: 'activation', activation: toActivationSpec(cfg.activation) } });
  });
  push({ name: 'logits', layer: { op: 'dense', units: classes, bias: true } });
  return { inputShape, classes, nodes, output: prev };
}
