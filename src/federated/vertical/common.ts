import type { PartyConfig } from '../schema.js';
import type { PartyTable } from '../party-data.js';
import { makeRng, permutation } from '../../util/rng.js';

/** What the label holder and the banks share: the columns a party read, the run's plan, batching. */

/** Banks clip each (normalized) row to this L2 norm under DP: the label-DP sensitivity |x| |g|. */
export const X_MAX = 3;

export interface LocalColumns {
  party: PartyConfig;
  index: number;
  table: PartyTable;
  features: string[];
  keyCol: number;
  x: Float32Array;
}

/** Standardizes the columns with this party's own statistics (they never leave it, except into the final checkpoint). */
export function standardize(x: Float32Array, rows: Int32Array | null, F: number): { mean: number[]; std: number[]; out: Float64Array } {
  const n = rows ? rows.length : x.length / F;
  const at = (r: number) => (rows ? rows[r] : r);
  const mean = new Array<number>(F).fill(0);
  const sq = new Array<number>(F).fill(0);
  for (let r = 0; r < n; r++) for (let j = 0; j < F; j++) mean[j] += x[at(r) * F + j] / n;
  for (let r = 0; r < n; r++) for (let j = 0; j < F; j++) sq[j] += (x[at(r) * F + j] - mean[j]) ** 2 / n;
  const std = sq.map((v) => (v > 0 ? Math.sqrt(v) : 1));
  const out = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = (x[i] - mean[i % F]) / std[i % F];
  return { mean, std, out };
}

export function gather(x: Float64Array, F: number, rows: ArrayLike<number>): Float64Array {
  const out = new Float64Array(rows.length * F);
  for (let r = 0; r < rows.length; r++) out.set(x.subarray(rows[r] * F, rows[r] * F + F), r * F);
  return out;
}

export interface Plan {
  train: Int32Array;
  validation: Int32Array;
  test: Int32Array;
  shuffleSeed: number;
  classes: number;
  hidden: number;
  totalFeatures: number;
}

export function batches(plan: Plan, epoch: number, batch: number): Int32Array[] {
  const order = permutation(plan.train.length, makeRng(plan.shuffleSeed, `vfl-epoch:${epoch}`));
  const out: Int32Array[] = [];
  for (let s = 0; s < order.length; s += batch) out.push(Int32Array.from(order.subarray(s, s + batch), (k) => plan.train[k]));
  return out;
}

export function chunks(rows: Int32Array, batch: number): Int32Array[] {
  const out: Int32Array[] = [];
  for (let s = 0; s < rows.length; s += batch) out.push(rows.subarray(s, s + batch));
  return out;
}

