import type { Graph, GraphNode } from './graph.js';
import { activationDepth, inferShapes, paramShapes } from './graph.js';
import type { Ranges } from '../train/checkpoint.js';

export interface SummaryRow {
  name: string;
  op: string;
  detail: string;
  inputs: string[];
  output_shape: number[];
  params: number;
  /** observed input range of an activation (training data, after the last epoch) */
  input_range: { min: number; max: number; p001: number; p999: number } | null;
  /** CKKS levels this layer consumes (scalars and batchnorm are folded into linear layers) */
  he_depth: number | null;
}

export interface ModelSummary {
  layers: SummaryRow[];
  total_params: number;
  he_depth: number | null;
  he_ready: boolean;
  non_polynomial: string[];
}

/**
 * Level cost of each layer under CKKS: a linear layer multiplies by plaintext weights (one
 * rescale); a quadratic or square activation one ciphertext product (its coefficients are
 * folded into the next linear layer); average pooling is additions plus a scalar that folds
 * into the next linear layer; batchnorm folds into the linear layer before it.
 */
export function layerDepth(node: GraphNode): number {
  const L = node.layer;
  switch (L.op) {
    case 'dense':
    case 'conv2d':
      return 1;
    case 'activation':
      return activationDepth(L.activation);
    case 'maxpool':
      return Infinity;
    default:
      return 0;
  }
}

function describe(node: GraphNode): string {
  const L = node.layer;
  switch (L.op) {
    case 'dense':
      return `${L.units} units`;
    case 'conv2d':
      return `${L.filters}x${L.kernel}x${L.kernel} s${L.stride} ${L.padding}`;
    case 'activation':
      return L.activation.kind + ('degree' in L.activation ? ` d${L.activation.degree}` : '');
    case 'avgpool':
    case 'maxpool':
      return `${L.size}x${L.size} s${L.stride}`;
    case 'pad':
      return `+${L.top + L.bottom}x${L.left + L.right}`;
    default:
      return '';
  }
}

export function summarize(graph: Graph, ranges: Ranges | null): ModelSummary {
  const shapes = inferShapes(graph);
  const depthAt = new Map<string, number>([['input', 0]]);
  const layers = graph.nodes.map((node): SummaryRow => {
    const ps = paramShapes(node, shapes.get(node.inputs[0])!);
    const params = Object.values(ps).reduce((a, s) => a + s.reduce((x, y) => x * y, 1), 0);
    const d = layerDepth(node);
    depthAt.set(node.name, Math.max(...node.inputs.map((i) => depthAt.get(i) ?? 0)) + d);
    return {
      name: node.name,
      op: node.layer.op,
      detail: describe(node),
      inputs: node.inputs,
      output_shape: shapes.get(node.name)!,
      params,
      input_range: node.layer.op === 'activation' ? (ranges?.activations[node.name] ?? null) : null,
      he_depth: Number.isFinite(d) ? d : null,
    };
  });
  const nonPoly = layers.filter((l) => l.he_depth === null).map((l) => `${l.name} (${l.op === 'activation' ? l.detail : l.op})`);
  const total = depthAt.get(graph.output)!;
  return {
    layers,
    total_params: layers.reduce((a, l) => a + l.params, 0),
    he_depth: Number.isFinite(total) ? total : null,
    he_ready: nonPoly.length === 0,
    non_polynomial: nonPoly,
  };
}
