import type { ModelConfig } from '../recipe/schema.js';
import type { Graph } from './graph.js';
import { buildMlp } from './mlp.js';
import { buildCnn } from './cnn.js';
import { buildResnet } from './resnet.js';
import { buildTransformer } from './transformer.js';

/** Recipe `model` section -> the shared network description. */
export function buildGraph(cfg: ModelConfig, inputShape: number[], classes: number, recipeFile?: string): Graph {
  switch (cfg.kind) {
    case 'mlp':
      return buildMlp(cfg, inputShape, classes);
    case 'cnn':
      return buildCnn(cfg, inputShape, classes, recipeFile);
    case 'resnet':
      return buildResnet(cfg, inputShape, classes, recipeFile);
    case 'transformer':
      return buildTransformer(cfg, inputShape, classes, recipeFile);
  }
}
