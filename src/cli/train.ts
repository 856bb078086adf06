import { train } from '../api/train.js';
import { consoleCallbacks } from './progress.js';
import { abortOnSignals } from './interrupt.js';
import type { TrainCallbacks } from '../train/callbacks.js';

export interface TrainArgs {
  recipe: string;
  set?: string[];
  out?: string;
  resume?: boolean;
  overwrite?: boolean;
  json?: boolean;
  backend?: string;
}

/** `hepoly train RECIPE`: progress on stdout; with --json the run's figures as the last line. */
export async function runTrain(a: TrainArgs): Promise<void> {
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
