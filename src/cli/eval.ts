import { loadCheckpoint } from '../train/checkpoint.js';
import { evaluateSplit, heldOutSplit, toParams } from '../train/evaluate.js';
import { initBackend } from '../train/backend.js';
import { shortPath } from '../recipe/load.js';

export interface EvalArgs {
  checkpoint: string;
  json?: boolean;
  backend?: string;
}

export async function runEval(a: EvalArgs): Promise<void> {
  const ckpt = loadCheckpoint(a.checkpoint);
  const backend = await initBackend(a.backend);
  const split = await heldOutSplit(ckpt);
  const params = toParams(ckpt.weights);
  try {
    const r = evaluateSplit(ckpt.graph, params, split);
    const result = { checkpoint: ckpt.dir, split: split.name, samples: r.samples, accuracy: r.accuracy, loss: r.loss };
    console.log(`backend: ${backend}`);
    console.log(`${shortPath(ckpt.dir)}: ${split.name} split, ${r.samples} samples: accuracy ${r.accuracy.toFixed(4)}, loss ${r.loss.toFixed(4)}`);
    if (a.json) console.log(JSON.stringify(result));
  } finally {
    for (const t of params.values()) t.dispose();
  }
}
