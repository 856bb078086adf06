import * as tf from '@tensorflow/tfjs-core';
import type { RangeStat } from './checkpoint.js';

/**
 * Accumulates min/max exactly and percentiles from a fixed-size sample of each batch's
 * values: sorting every activation value of a CNN over 60k images would need gigabytes,
 * while 0.1/99.9 percentiles from ~10^6 sampled values are accurate to well under 1%.
 */
export class RangeAccumulator {
  private min = Infinity;
  private max = -Infinity;
  private samples: number[] = [];

  constructor(private readonly perBatch = 4096) {}

  add(t: tf.Tensor): void {
    const flat = t.dataSync() as Float32Array;
    const stride = Math.max(1, Math.floor(flat.length / this.perBatch));
    let mn = this.min;
    let mx = this.max;
    for (let i = 0; i < flat.length; i++) {
      const v = flat[i];
      if (v < mn) mn = v;
      if (v > mx) mx = v;
    }
    this.min = mn;
    this.max = mx;
    for (let i = (this.samples.length * 7919) % stride; i < flat.length; i += stride) this.samples.push(flat[i]);
  }

  result(): RangeStat {
    const s = Float64Array.from(this.samples).sort();
    const q = (p: number) => (s.length ? s[Math.min(s.length - 1, Math.max(0, Math.round(p * (s.length - 1))))] : 0);
    return { min: this.min, max: this.max, p001: q(0.001), p999: q(0.999) };
  }
}
