import type { ModelConfig } from '../recipe/schema.js';
import { HepolyError } from '../util/errors.js';
import { type Graph, type GraphNode, type LayerSpec, INPUT, inferShapes } from './graph.js';
import { toActivationSpec } from './activation.js';
import { allOps } from '../ops/registry.js';
import type { RecipeFace } from '../ops/types.js';

type CnnConfig = Extract<ModelConfig, { kind: 'cnn' }>;

/**
 * The recipe's layer list, in order. The last layer must be a dense layer: it is the
 * classifier, its units default to the number of classes. A dense layer after an image
 * tensor gets an implicit flatten, as Keras users would write it by hand anyway.
 */
export function buildCnn(cfg: CnnConfig, inputShape: number[], classes: number, recipeFile = 'recipe'): Graph {
  const last = cfg.layers[cfg.layers.length - 1];
  if (last.type !== 'dense') {
    throw new HepolyError(
      `${recipeFile}: model.layers[${cfg.layers.length - 1}]: the last layer must be the classifier {type: dense}, found {type: ${last.type}}. Add "- {type: dense}" at the end (its units default to the ${classes} classes)`,
    );
  }
  if (last.units !== undefined && last.units !== classes) {
    throw new HepolyError(
      `${recipeFile}: model.layers[${cfg.layers.length - 1}].units: the classifier has ${last.units} units but the data has ${classes} classes. Remove "units" or set it to ${classes}`,
    );
  }
  if (inputShape.length !== 3) {
    throw new HepolyError(
      `${recipeFile}: model.kind: a cnn needs image inputs [H, W, C], but the data gives ${inputShape.length === 1 ? `${inputShape[0]} flat features` : `shape [${inputShape.join(', ')}]`}. For CSV data set data.shape (e.g. [8, 8, 1]) so the features form an image, or use model.kind: mlp`,
    );
  }
  const nodes: GraphNode[] = [];
  let prev = INPUT;
  const counts: Record<string, number> = {};
  const push = (base: string, layer: LayerSpec, name?: string) => {
    counts[base] = (counts[base] ?? 0) + 1;
    const n = name ?? `${base}${counts[base]}`;
    nodes.push({ name: n, layer, inputs: [prev] });
    prev = n;
  };
  const shapeNow = () => {
    try {
      return inferShapes({ inputShape, classes, nodes, output: prev }).get(prev)!;
    } catch (e) {
      throw new HepolyError(`${recipeFile}: model.layers: ${(e as Error).message}`);
    }
  };
  const activation = toActivationSpec(cfg.activation);
  cfg.layers.forEach((l, i) => {
    const face = recipeFace(l.type);
    const isLast = i === cfg.layers.length - 1;
    // a layer reading a vector after an image gets an implicit flatten
    if (face.flatInput && shapeNow().length !== 1) push('flatten', { op: 'flatten' });
    const layer = face.toLayer(l, { inShape: shapeNow(), isLast, classes, activation, at: (field) => `${recipeFile}: model.layers[${i}].${field}` });
    // the last layer is the classifier: its output is the logits
    push(face.nodeName, layer, isLast ? 'logits' : undefined);
  });
  const graph: Graph = { inputShape, classes, nodes, output: prev };
  try {
    inferShapes(graph);
  } catch (e) {
    throw new HepolyError(`${recipeFile}: model.layers: ${(e as Error).message}`);
  }
  return graph;
}

/** The op a cnn recipe's `type` names. */
function recipeFace(type: string): RecipeFace<LayerSpec, unknown> {
  const def = allOps().find((d) => d.recipe?.type === type);
  if (!def?.recipe) throw new Error(`unreachable: recipe layer type ${type} passed the schema but no op's recipe face names it`);
  return def.recipe;
}
