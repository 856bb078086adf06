import * as tf from '@tensorflow/tfjs-core';
import type { WeightMap } from '../models/graph.js';

/**
 * The pruning record a checkpoint carries in prune.json: how it was pruned, and the 0/1 mask
 * of every masked weight tensor as a base64 bitset. Fine-tuning and `train --resume` reapply
 * the mask after every optimizer step, so a pruned weight never grows back.
 */
export interface PruneRecord {
  method: 'magnitude' | 'hepex';
  sparsity: number;
  tile: number;
  expand: boolean;
  /** hidden units per layer before and after pruning (removed units are gone from the graph) */
  units: Record<string, { before: number; after: number }>;
  /** original indices of the removed units, per layer (HE-PEx: the tail of its permutation) */
  removed: Record<string, number[]>;
  /** fraction of kernel weights that are zero after pruning (all layers) */
  weight_sparsity: number;
  /** weight key -> base64 bitset (bit i = weight i is kept) */
  masks: Record<string, string>;
}

export type MaskMap = Map<string, Uint8Array>;

export function encodeMask(mask: Uint8Array): string {
  const bits = new Uint8Array(Math.ceil(mask.length / 8));
  for (let i = 0; i < mask.length; i++) if (mask[i]) bits[i >> 3] |= 1 << (i & 7);
  return Buffer.from(bits).toString('base64');
}

export function decodeMask(b64: string, length: number): Uint8Array {
  const bits = Buffer.from(b64, 'base64');
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = (bits[i >> 3] >> (i & 7)) & 1;
  return out;
}

export function applyMasks(weights: WeightMap, masks: MaskMap): void {
  for (const [key, m] of masks) {
    const w = weights.get(key);
    if (!w) continue;
    for (let i = 0; i < m.length; i++) if (!m[i]) w.data[i] = 0;
  }
}

function isRecord(v: unknown): v is PruneRecord {
  return !!v && typeof v === 'object' && typeof (v as PruneRecord).masks === 'object';
}

/** Zeroes the masked weights of a training run after each of its optimizer steps. */
export function holdPruneMask(
  run: { params: Map<string, tf.Tensor>; afterStep: (() => void) | null; prune: unknown },
  record: unknown,
): void {
  if (!isRecord(record)) return;
  run.prune = record;
  const held: { v: tf.Variable; m: tf.Tensor }[] = [];
  for (const [key, b64] of Object.entries(record.masks)) {
    const v = run.params.get(key) as tf.Variable | undefined;
    if (!v) continue;
    held.push({ v, m: tf.tensor(decodeMask(b64, v.size), v.shape, 'float32') });
  }
  if (!held.length) return;
  const hold = () => tf.tidy(() => held.forEach(({ v, m }) => v.assign(tf.mul(v, m))));
  hold();
  run.afterStep = hold;
}
