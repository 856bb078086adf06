import type { ClientArtifact } from '../artifact-format.js';
import { HepolyError } from '../../util/errors.js';

/**
 * The training-time input transform, applied by the client before packing (the server only
 * ever sees ciphertexts of normalized values). Same formulas as src/data/dataset.ts's
 * applyNormalize, without its file-reading module: standard (x - mean) / std, minmax
 * (x - min) / (max - min), affine x * scale + shift; a zero spread counts as 1.
 */
export function preprocessSample(artifact: ClientArtifact, raw: ArrayLike<number>, where = 'input'): Float64Array {
  const shape = artifact.preprocess.input_shape;
  const per = shape.reduce((a, b) => a * b, 1);
  if (raw.length !== per) throw new HepolyError(`${where}: ${raw.length} values, the model takes ${per} (shape [${shape.join(', ')}])`);
  const x = Float64Array.from(raw);
  for (let j = 0; j < per; j++) {
    if (!Number.isFinite(x[j])) throw new HepolyError(`${where}: value ${j} is ${raw[j]}, expected a finite number`);
  }
  const n = artifact.preprocess.normalize;
  switch (n.kind) {
    case 'none':
      return x;
    case 'affine':
      for (let j = 0; j < per; j++) x[j] = x[j] * n.scale + n.shift;
      return x;
    case 'standard':
    case 'minmax': {
      const a = n.kind === 'standard' ? n.mean : n.min;
      const b = n.kind === 'standard' ? n.std : n.max;
      for (let j = 0; j < per; j++) {
        const d = n.kind === 'standard' ? b[j] : b[j] - a[j];
        x[j] = (x[j] - a[j]) * (d > 0 ? 1 / d : 1);
      }
      return x;
    }
  }
}

/** Index of the largest logit per sample, and its label. */
export function argmax(logits: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  return best;
}
