import { HepolyError } from '../util/errors.js';
import { shortPath } from '../util/paths.js';
import type { TrainResult } from './callbacks.js';
import type { Ranges } from './checkpoint.js';

/**
 * Where the eval-mode network stops being finite (fixed moving statistics let stacked
 * polynomials square an excess layer after layer), or null when it is finite on the training
 * set and the validation loss is.
 */
export function inferenceOverflow(ranges: Ranges | null, valLoss: number | null): string | null {
  const first = Object.entries(ranges?.activations ?? {}).find(([, r]) => !Number.isFinite(r.min) || !Number.isFinite(r.max));
  if (first) return `the input of ${first[0]} is not finite on the training set`;
  return valLoss === null || Number.isFinite(valLoss) ? null : 'the validation loss is not finite';
}

/**
 * A model that trains (batch statistics renormalize every batch) but overflows at inference is
 * not usable: said once, with the layer where it starts, instead of a quiet `val_acc 0.10`. The
 * checkpoint and its report stay for inspection.
 */
export function refuseInferenceOverflow(where: string | null, result: TrainResult, recipeFile: string, reestimated: boolean): void {
  if (!where) return;
  const after = reestimated ? ', also after re-estimating the moving statistics on training batches' : '';
  throw new HepolyError(
    `${recipeFile}: the trained model overflows at inference (eval mode, where batchnorm uses its moving statistics): ${where}${after} (train_acc ${result.train_accuracy.toFixed(4)}, val_acc ${result.val_accuracy.toFixed(4)}). ` +
      `The checkpoint ${shortPath(result.checkpoint)} and its report are kept for inspection (hepoly report ${shortPath(result.checkpoint)}). ` +
      'Train on more batches (more data.limit or train.epochs: moving statistics lag the weights on short runs), normalize the inputs (data.normalize), or keep activations in range with a larger range.weight or a lower train.optimizer.lr',
    { exitCode: 3 },
  );
}
