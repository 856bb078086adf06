import type { Graph, GraphNode } from './graph.js';
import { inferShapes, paramShapes } from './graph.js';
import { opOf } from '../ops/registry.js';
import { nodeLevelCost } from '../ops/level-cost.js';
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

/** The first range the op records (its input, or an internal value such as a denominator). */
function recordedRange(node: GraphNode, ranges: Ranges | null): SummaryRow['input_range'] {
  const [what] = opOf(node).rangeProbes(node.layer);
  if (!what || !ranges) return null;
  return ranges.activations[what === 'input' ? node.name : `${node.name}/${what}`] ?? null;
}

export function summarize(graph: Graph, ranges: Ranges | null): ModelSummary {
  const shapes = inferShapes(graph);
  // levels along the deepest path to each node; null once any layer on it is unknown
  const depthAt = new Map<string, number | null>([['input', 0]]);
  const nonPoly: string[] = [];
  const layers = graph.nodes.map((node): SummaryRow => {
    const def = opOf(node);
    const ps = paramShapes(node, shapes.get(node.inputs[0])!);
    const params = Object.values(ps).reduce((a, s) => a + s.reduce((x, y) => x * y, 1), 0);
    // as the compiler spends them: the op's levelCost, and the output's pending factor (src/ops/level-cost.ts)
    const d = nodeLevelCost(graph, node, ranges);
    const before = node.inputs.map((i) => (depthAt.has(i) ? depthAt.get(i)! : 0));
    depthAt.set(node.name, d === null || before.some((b) => b === null) ? null : Math.max(...(before as number[])) + d);
    const poly = def.polynomial(node.layer);
    if (poly !== true) nonPoly.push(`${node.name} (${poly})`);
    return {
      name: node.name,
      op: node.layer.op,
      detail: def.describe(node.layer),
      inputs: node.inputs,
      output_shape: shapes.get(node.name)!,
      params,
      input_range: recordedRange(node, ranges),
      he_depth: d !== null && Number.isFinite(d) ? d : null,
    };
  });
  const total = depthAt.get(graph.output);
  return {
    layers,
    total_params: layers.reduce((a, l) => a + l.params, 0),
    he_depth: total !== null && total !== undefined && Number.isFinite(total) ? total : null,
    he_ready: nonPoly.length === 0,
    non_polynomial: nonPoly,
  };
}
