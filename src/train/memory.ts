import { totalmem } from 'node:os';
import { type Graph, inferShapes, paramShapes } from '../models/graph.js';
import type { Recipe } from '../recipe/schema.js';
import { HepolyError } from '../util/errors.js';

const GiB = 2 ** 30;

/**
 * A lower bound on what training needs, checked before anything is allocated, so that
 * `model.hidden: [1e9]` or `train.batch: 1e9` is a message and not a RangeError: float32
 * weights with their gradient and two Adam moments, plus one batch of activations.
 */
export function estimateTrainingBytes(graph: Graph, batch: number): number {
  const shapes = inferShapes(graph);
  const size = (s: number[]) => s.reduce((a, b) => a * b, 1);
  let params = 0;
  let activations = size(graph.inputShape);
  for (const node of graph.nodes) {
    for (const shape of Object.values(paramShapes(node, shapes.get(node.inputs[0])!))) params += size(shape);
    activations += size(shapes.get(node.name)!);
  }
  return 4 * (4 * params + 2 * batch * activations);
}

export function checkFitsInMemory(graph: Graph, recipe: Recipe, recipeFile: string): void {
  const need = estimateTrainingBytes(graph, recipe.train.batch);
  const have = totalmem();
  if (need > 0.8 * have) {
    throw new HepolyError(
      `${recipeFile}: the model and batch need at least ${(need / GiB).toFixed(1)} GiB to train (weights, gradients, optimizer state and one batch of activations), this machine has ${(have / GiB).toFixed(1)} GiB. Use smaller layers (model) or a smaller train.batch (now ${recipe.train.batch})`,
    );
  }
}
