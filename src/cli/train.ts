import type { TrainOptions } from '../api/train.js';
import { abortOnSignals } from './interrupt.js';
import type { TrainCallbacks } from '../train/callbacks.js';
import { defineCommand } from './command.js';

/** The library's train options that the command line sets (src/api/train.ts), plus what only the CLI has. */
export type TrainArgs = Pick<TrainOptions, 'out' | 'resume' | 'overwrite' | 'backend'> & { recipe: string; set?: string[]; json?: boolean };

/** `hepoly train RECIPE`: progress on stdout; with --json the run's figures as the last line. */
export async function runTrain(a: TrainArgs): Promise<void> {
  const [{ train }, { consoleCallbacks }] = await Promise.all([import('../api/train.js'), import('./progress.js')]);
  const interrupt = abortOnSignals();
  const log = (l: string) => console.log(l);
  const progress = consoleCallbacks(log, !!process.stdout.isTTY && !a.json);
  // Ctrl-C stops training between batches; after it (pruning, the report) it exits at once as before
  const callbacks: TrainCallbacks = {
    ...progress,
    onEnd(r) {
      interrupt.dispose();
      progress.onEnd?.(r);
    },
  };
  const result = await train(a.recipe, {
    set: a.set,
    out: a.out,
    resume: a.resume,
    overwrite: a.overwrite,
    backend: a.backend,
    signal: interrupt.signal,
    callbacks,
    log,
  }).finally(interrupt.dispose);
  if (a.json) console.log(JSON.stringify(result));
}

export const trainCommand = defineCommand(
  'train <recipe>',
  'train a recipe into a checkpoint',
  (y) =>
    y
      .positional('recipe', { type: 'string', demandOption: true, describe: 'recipe YAML file (or the name of a shipped recipe)' })
      .option('set', { type: 'string', array: true, describe: 'override a recipe key, e.g. --set train.epochs=3 (repeatable)' })
      .option('out', { type: 'string', describe: 'checkpoint directory (default checkpoints/<name>)' })
      .option('resume', { type: 'boolean', default: false, describe: 'continue from the last completed epoch' })
      .option('overwrite', { type: 'boolean', default: false, describe: 'replace an existing checkpoint at the output folder (anything else there is never replaced)' })
      .option('backend', { type: 'string', describe: 'force a tfjs backend: tensorflow-gpu, tensorflow, wasm or cpu' })
      .option('json', { type: 'boolean', default: false, describe: 'print a JSON object as the last line' }),
  (a) => runTrain({ recipe: a.recipe, set: a.set, out: a.out, resume: a.resume, overwrite: a.overwrite, json: a.json, backend: a.backend }),
);
