import type { ModelConfig } from '../recipe/schema.js';
import { HepolyError } from '../util/errors.js';
import { type Graph, type GraphNode, type LayerSpec, INPUT, inferShapes } from './graph.js';
import { toActivationSpec } from './activation.js';

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
  let rank = inputShape.length;
  const counts: Record<string, number> = {};
  const push = (base: string, layer: LayerSpec) => {
    counts[base] = (counts[base] ?? 0) + 1;
    const name = `${base}${counts[base]}`;
    nodes.push({ name, layer, inputs: [prev] });
    prev = name;
  };
  cfg.layers.forEach((l, i) => {
    const isLast = i === cfg.layers.length - 1;
    switch (l.type) {
      case 'conv':
        push('conv', { op: 'conv2d', filters: l.filters, kernel: l.kernel, stride: l.stride, padding: l.padding, bias: l.bias, ...(l.groups && l.groups > 1 ? { groups: l.groups } : {}) });
        break;
      case 'activation':
        push('act', { op: 'activation', activation: toActivationSpec(l.activation ?? cfg.activation) });
        break;
      case 'avgpool':
        push('avgpool', { op: 'avgpool', size: l.size, stride: l.stride ?? l.size });
        break;
      case 'maxpool':
        push('maxpool', { op: 'maxpool', size: l.size, stride: l.stride ?? l.size });
        break;
      case 'global_avgpool':
        push('gap', { op: 'global_avgpool' });
        rank = 1;
        break;
      case 'batchnorm':
        push('bn', { op: 'batchnorm', momentum: l.momentum, epsilon: l.epsilon });
        break;
      case 'flatten':
        push('flatten', { op: 'flatten' });
        rank = 1;
        break;
      case 'pad': {
        const shapes = inferShapes({ inputShape, classes, nodes, output: prev });
        const [h, w] = shapes.get(prev)!;
        if (l.to < h || l.to < w) {
          throw new HepolyError(`${recipeFile}: model.layers[${i}].to: cannot pad [${h}, ${w}] down to ${l.to}. Use a size >= ${Math.max(h, w)}`);
        }
        const dh = l.to - h;
        const dw = l.to - w;
        push('pad', { op: 'pad', top: Math.floor(dh / 2), bottom: dh - Math.floor(dh / 2), left: Math.floor(dw / 2), right: dw - Math.floor(dw / 2) });
        break;
      }
      case 'dense':
        if (rank !== 1) {
          push('flatten', { op: 'flatten' });
          rank = 1;
        }
        if (isLast) {
          nodes.push({ name: 'logits', layer: { op: 'dense', units: classes, bias: l.bias }, inputs: [prev] });
          prev = 'logits';
        } else {
          if (l.units === undefined) {
            throw new HepolyError(`${recipeFile}: model.layers[${i}].units: a hidden dense layer needs units (only the last, the classifier, defaults to the class count)`);
          }
          push('dense', { op: 'dense', units: l.units, bias: l.bias });
        }
        break;
    }
  });
  const graph: Graph = { inputShape, classes, nodes, output: prev };
  try {
    inferShapes(graph);
  } catch (e) {
    throw new HepolyError(`${recipeFile}: model.layers: ${(e as Error).message}`);
  }
  return graph;
}
