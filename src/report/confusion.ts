import * as tf from '@tensorflow/tfjs-core';
import type { Graph } from '../models/graph.js';
import { forward, type ParamMap } from '../models/tf-interpreter.js';

/** matrix[true][predicted] = count; rows sum to the samples of that class. */
export interface Confusion {
  labels: string[];
  matrix: number[][];
  samples: number;
  accuracy: number;
  /** per class: correct / samples of that class (NaN for a class absent from the split) */
  per_class: number[];
}

/** Argmax of each row of `classes` logits. */
export function argmaxRows(logits: Float32Array, classes: number): Int32Array {
  const n = logits.length / classes;
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let c = 1; c < classes; c++) if (logits[i * classes + c] > logits[i * classes + best]) best = c;
    out[i] = best;
  }
  return out;
}

export function confusionMatrix(truth: ArrayLike<number>, predicted: ArrayLike<number>, labels: string[]): Confusion {
  const k = labels.length;
  const matrix = Array.from({ length: k }, () => new Array<number>(k).fill(0));
  for (let i = 0; i < truth.length; i++) matrix[truth[i]][predicted[i]]++;
  const correct = matrix.reduce((a, row, i) => a + row[i], 0);
  const perClass = matrix.map((row, i) => {
    const total = row.reduce((a, b) => a + b, 0);
    return total ? row[i] / total : NaN;
  });
  return { labels, matrix, samples: truth.length, accuracy: truth.length ? correct / truth.length : NaN, per_class: perClass };
}

/** The network's logits over a split, in inference mode (batched so memory stays flat). */
export function splitLogits(graph: Graph, params: ParamMap, x: Float32Array, count: number, batch = 256): Float32Array {
  const per = graph.inputShape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(count * graph.classes);
  for (let start = 0; start < count; start += batch) {
    const n = Math.min(batch, count - start);
    const logits = tf.tidy(() => {
      const xb = tf.tensor(x.subarray(start * per, (start + n) * per), [n, ...graph.inputShape]);
      return forward(graph, params, xb, { training: false }).logits.dataSync() as Float32Array;
    });
    out.set(logits, start * graph.classes);
  }
  return out;
}
