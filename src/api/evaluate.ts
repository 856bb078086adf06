import { loadCheckpoint, trainingStatus } from '../train/checkpoint.js';
import { evaluateSplit, heldOutSplit, toParams } from '../train/evaluate.js';
import { initBackend } from '../train/backend.js';
import { refuseVerticalCheckpoint } from '../federated/vertical/checkpoint-guard.js';

export interface EvaluateOptions {
  /** tfjs backend: tensorflow-gpu, tensorflow, wasm or cpu (default: the fastest that loads) */
  backend?: string;
  /** the folder the checkpoint's relative data paths are read from (for a moved checkpoint or data) */
  data?: string;
}

/** What `hepoly eval --json` prints. */
export interface EvaluateResult {
  checkpoint: string;
  /** the test set when the data has one, else the validation split */
  split: 'test' | 'validation';
  samples: number;
  accuracy: number;
  loss: number;
  /** epochs trained and planned: a checkpoint killed mid-training says so */
  trained_epochs: number;
  planned_epochs: number;
  training_complete: boolean;
}

/** Accuracy and loss of a checkpoint on its held-out split. */
export async function evaluate(checkpoint: string, o: EvaluateOptions = {}): Promise<EvaluateResult> {
  refuseVerticalCheckpoint(checkpoint, 'eval', o.data);
  const ckpt = loadCheckpoint(checkpoint);
  await initBackend(o.backend);
  const split = await heldOutSplit(ckpt, o.data);
  const params = toParams(ckpt.weights);
  try {
    const r = evaluateSplit(ckpt.graph, params, split);
    const t = trainingStatus(ckpt);
    return {
      checkpoint: ckpt.dir,
      split: split.name,
      samples: r.samples,
      accuracy: r.accuracy,
      loss: r.loss,
      trained_epochs: t.trained_epochs,
      planned_epochs: t.planned_epochs,
      training_complete: t.complete,
    };
  } finally {
    for (const t of params.values()) t.dispose();
  }
}
