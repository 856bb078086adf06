import { loadRecipe, shortPath } from '../recipe/load.js';
import { train } from '../train/loop.js';
import { consoleCallbacks } from './progress.js';
import { checkPrunable, pruneCheckpoint, specFromRecipe } from '../train/prune.js';
import { loadCheckpoint } from '../train/checkpoint.js';

export interface TrainArgs {
  recipe: string;
  set?: string[];
  out?: string;
  resume?: boolean;
  json?: boolean;
  backend?: string;
}

export async function runTrain(a: TrainArgs): Promise<void> {
  const { recipe, file } = loadRecipe(a.recipe, a.set ?? []);
  // refused before training, not after an hour of it
  if (recipe.prune) checkPrunable(recipe.model, specFromRecipe(recipe.prune), shortPath(file));
  const result = await train({
    recipe,
    recipeFile: shortPath(file),
    outDir: a.out,
    resume: a.resume,
    backend: a.backend,
    callbacks: consoleCallbacks((l) => console.log(l), !!process.stdout.isTTY && !a.json),
  });
  // a resumed run of an already pruned checkpoint keeps its mask and is not pruned again
  if (recipe.prune && !loadCheckpoint(result.checkpoint).prune) {
    const pruned = await pruneCheckpoint({
      checkpoint: result.checkpoint,
      out: result.checkpoint,
      spec: specFromRecipe(recipe.prune),
      epochs: recipe.prune.epochs,
      backend: a.backend,
      log: (l) => console.log(l),
    });
    Object.assign(result, pruned.split === 'test' ? { test_accuracy: pruned.accuracy_finetuned } : {}, { prune: pruned });
  }
  if (a.json) console.log(JSON.stringify(result));
}
