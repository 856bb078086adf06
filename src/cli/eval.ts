import type { EvaluateOptions } from '../api/evaluate.js';
import { defineCommand } from './command.js';

/** The library's evaluate options (src/api/evaluate.ts), plus what only the CLI has. */
export type EvalArgs = EvaluateOptions & { checkpoint: string; json?: boolean };

export async function runEval(a: EvalArgs): Promise<void> {
  const [{ evaluate }, { initBackend }, { shortPath }] = await Promise.all([import('../api/evaluate.js'), import('../train/backend.js'), import('../util/paths.js')]);
  const r = await evaluate(a.checkpoint, { backend: a.backend, data: a.data });
  // evaluate loaded it; this only names it
  const backend = await initBackend(a.backend);
  console.log(`backend: ${backend}`);
  console.log(`${shortPath(r.checkpoint)}: ${r.split} split, ${r.samples} samples: accuracy ${r.accuracy.toFixed(4)}, loss ${r.loss.toFixed(4)}`);
  if (!r.training_complete) console.log(`note: trained ${r.trained_epochs} of ${r.planned_epochs} epochs (training stopped before its end); continue it with \`hepoly train RECIPE --resume --out ${shortPath(r.checkpoint)}\``);
  if (a.json) console.log(JSON.stringify(r));
}

export const evalCommand = defineCommand(
  'eval <checkpoint>',
  'accuracy and loss on the held-out split (test set, else validation)',
  (y) =>
    y
      .positional('checkpoint', { type: 'string', demandOption: true })
      .option('data', { type: 'string', describe: "folder the checkpoint's relative data paths are read from (a moved checkpoint or data set)" })
      .option('backend', { type: 'string' })
      .option('json', { type: 'boolean', default: false }),
  (a) => runEval({ checkpoint: a.checkpoint, json: a.json, backend: a.backend, data: a.data }),
);
