import { z } from 'zod';
import { convRecipe } from './conv2d.js';
import { activationRecipe } from './activation.js';
import { avgpoolRecipe, globalAvgpoolRecipe, maxpoolRecipe } from './pooling.js';
import { batchnormRecipe } from './batchnorm.js';
import { flattenRecipe, padRecipe } from './structure.js';
import { denseRecipe } from './dense.js';

/**
 * The layers a `cnn` recipe may list, from each op's recipe face (src/recipe/schema.ts uses
 * this union). In the order recipe errors list them; a new recipe layer type is one entry.
 */
export const CnnLayerSchema = z.discriminatedUnion('type', [
  convRecipe,
  activationRecipe,
  avgpoolRecipe,
  maxpoolRecipe,
  globalAvgpoolRecipe,
  batchnormRecipe,
  flattenRecipe,
  padRecipe,
  denseRecipe,
]);
