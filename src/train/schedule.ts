import type { TrainConfig } from '../recipe/schema.js';

/** Learning rate of `epoch` (0-based) under the recipe's schedule. */
export function learningRate(train: TrainConfig, epoch: number): number {
  const base = train.optimizer.lr;
  const s = train.schedule;
  const kind = typeof s === 'string' ? s : s.kind;
  if (kind === 'constant') return base;
  if (kind === 'step') {
    const every = typeof s === 'object' && s.kind === 'step' ? s.every : Math.max(1, Math.round(train.epochs / 3));
    const gamma = typeof s === 'object' && s.kind === 'step' ? s.gamma : 0.1;
    return base * Math.pow(gamma, Math.floor(epoch / every));
  }
  const minLr = typeof s === 'object' && s.kind === 'cosine' ? s.min_lr : 0;
  // cosine over the run, evaluated at the epoch's start, never reaching exactly zero
  const t = epoch / train.epochs;
  return minLr + (base - minLr) * 0.5 * (1 + Math.cos(Math.PI * t));
}
