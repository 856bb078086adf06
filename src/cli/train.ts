import { loadRecipe, shortPath } from '../recipe/load.js';
import { train } from '../train/loop.js';
import { consoleCallbacks } from './progress.js';

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
  const result = await train({
    recipe,
    recipeFile: shortPath(file),
    outDir: a.out,
    resume: a.resume,
    backend: a.backend,
    callbacks: consoleCallbacks((l) => console.log(l), !!process.stdout.isTTY && !a.json),
  });
  if (a.json) console.log(JSON.stringify(result));
}
