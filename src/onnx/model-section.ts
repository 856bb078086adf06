import type { CnnLayerConfig, ModelConfig } from '../recipe/schema.js';
import type { Graph } from '../models/graph.js';
import { INPUT, inferShapes } from '../models/graph.js';
import { buildGraph } from '../models/build.js';
import { opOf } from '../ops/registry.js';

/**
 * The recipe `model:` section written beside an imported network. The checkpoint's graph
 * (model.json) is what every command runs; the section matters to commands that rebuild or
 * reshape the model (prune, init_from). A sequential network gets the `cnn` (or `mlp`) layer
 * list that rebuilds exactly its graph, names included; others get a stand-in and say so.
 */
export function modelSection(graph: Graph): { model: ModelConfig; exact: boolean } {
  for (const model of [mlpSection(graph), cnnSection(graph)]) {
    if (model && rebuilds(model, graph)) return { model, exact: true };
  }
  const residual = graph.nodes.some((n) => n.inputs.length > 1);
  // a stand-in: prune refuses resnets (residual adds tie channels), which is right for these graphs too
  const model: ModelConfig = residual
    ? { kind: 'resnet', depth: 8, widths: [16, 32, 64], skip: 'standard', post_add_bn: true, activation: { kind: 'quad' } } as unknown as ModelConfig
    : { kind: 'cnn', activation: { kind: 'quad' }, layers: [{ type: 'dense', bias: true }] } as unknown as ModelConfig;
  return { model, exact: false };
}

function rebuilds(model: ModelConfig, graph: Graph): boolean {
  try {
    const rebuilt = buildGraph(model, graph.inputShape, graph.classes);
    return JSON.stringify(rebuilt) === JSON.stringify(graph);
  } catch {
    return false;
  }
}

const sequential = (graph: Graph) => graph.nodes.every((n, i) => n.inputs.length === 1 && n.inputs[0] === (i === 0 ? INPUT : graph.nodes[i - 1].name));

function cnnSection(graph: Graph): ModelConfig | null {
  if (!sequential(graph) || graph.inputShape.length !== 3) return null;
  const layers: Record<string, unknown>[] = [];
  const shapes = inferShapes(graph);
  for (const n of graph.nodes) {
    // each op's recipe face says how a cnn recipe writes it; an op without one has no recipe form
    const fromLayer = opOf(n).recipe?.fromLayer;
    if (!fromLayer) return null;
    layers.push(fromLayer(n.layer, { isLast: n.name === graph.output, outShape: shapes.get(n.name)! }));
  }
  return { kind: 'cnn', activation: { kind: 'quad' }, layers: layers as CnnLayerConfig[] } as ModelConfig;
}

/** An mlp recipe: dense widths, optional batchnorm and one activation, read through the ops' faces (the rebuild check decides). */
function mlpSection(graph: Graph): ModelConfig | null {
  const act = graph.nodes.find((n) => opOf(n).kind === 'activation');
  const activation = act ? opOf(act).recipe?.fromLayer?.(act.layer, { isLast: false, outShape: [] }).activation : undefined;
  if (!activation) return null;
  const hidden = graph.nodes.filter((n) => n.name !== graph.output).flatMap((n) => {
    const p = opOf(n).prunable;
    return p.role === 'units' ? [p.units(n.layer)] : [];
  });
  const batchnorm = graph.nodes.some((n) => opOf(n).kind === 'normalization');
  return { kind: 'mlp', hidden, batchnorm, activation } as unknown as ModelConfig;
}
