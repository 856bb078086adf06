import type { PackingKind, ParamDef, Support } from './types.js';

import { z } from 'zod';

/** Small pieces several op files share. */

export const posInt = z.number().int().positive();

/** Every packing runs ops lowered to the program IR (linear, power and struct steps). */
export const ALL_PACKINGS: Record<PackingKind, Support> = { batch: true, sample: true, stacked: true, interleaved: true, token: true };

/** Image ops: every packing but token packing, which folds token sequences. */
export const IMAGE_PACKINGS: Record<PackingKind, Support> = { ...ALL_PACKINGS, token: 'an image op: token packing folds token sequences (transformers)' };

export function noPacking(reason: string): Record<PackingKind, Support> {
  return { batch: reason, sample: reason, stacked: reason, interleaved: reason, token: reason };
}

export function size(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Glorot-uniform (Glorot & Bengio 2010): U(-l, l), l = sqrt(6 / (fanIn + fanOut)). */
export function glorot(shape: number[], fanIn: number, fanOut: number): ParamDef {
  return { shape, init: { kind: 'uniform', limit: Math.sqrt(6 / (fanIn + fanOut)) }, trainable: true };
}

export function zeros(shape: number[]): ParamDef {
  return { shape, init: { kind: 'zeros' }, trainable: true };
}

export function ones(shape: number[]): ParamDef {
  return { shape, init: { kind: 'ones' }, trainable: true };
}

/** Throws unless the per-sample input has `rank` axes. */
export function needRank(node: string, op: string, x: number[], rank: number, what: string, hint = ''): void {
  if (x.length !== rank) throw new Error(`layer ${node} (${op}) needs ${what}, got [${x.join(', ')}]${hint}`);
}

export const needImage = (node: string, op: string, x: number[]) => needRank(node, op, x, 3, 'an image input [H, W, C]');
