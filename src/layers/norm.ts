import * as tf from '@tensorflow/tfjs-core';
import { fitInvSqrt, invSqrtApprox, type NewtonApprox } from './reciprocal.js';

/**
 * Layer normalization over the features of each token (Ba et al.):
 *
 *   mu = mean_j x_j,  v = mean_j (x_j - mu)^2,  y_j = gamma_j (x_j - mu) r(v + eps) + beta_j
 *
 * with r(v) = v^-1/2 for `layernorm` (not polynomial: the softmax twin's normalization), and for
 * `poly-layernorm` r = the Newton approximation of v^-1/2 fitted to the variance range [lo, hi]
 * given in the recipe (`layers/reciprocal.ts`: linear start, then y <- y (3 - v y^2) / 2). The
 * polynomial is used in training too, so the network that is trained is exactly the one HE
 * evaluates; the observed variance range is recorded in ranges.json to check it stays inside
 * [lo, hi], where the approximation error is bounded.
 */

export interface PolyNormSpec {
  range: [number, number];
  iterations: number;
}

/** Plain-number reference on one token. */
export function layerNorm(
  x: ArrayLike<number>,
  gamma: ArrayLike<number>,
  beta: ArrayLike<number>,
  epsilon: number,
  poly: PolyNormSpec | null = null,
): { y: Float64Array; variance: number } {
  const n = x.length;
  let mu = 0;
  for (let j = 0; j < n; j++) mu += x[j];
  mu /= n;
  let v = 0;
  for (let j = 0; j < n; j++) v += (x[j] - mu) ** 2;
  v /= n;
  const r = poly ? invSqrtApprox(v + epsilon, fitInvSqrt(poly.range[0], poly.range[1], poly.iterations)) : 1 / Math.sqrt(v + epsilon);
  return { y: Float64Array.from(x, (xj, j) => gamma[j] * (xj - mu) * r + beta[j]), variance: v };
}

/** The Newton inverse square root on a tensor (element-wise). */
export function invSqrtTf(v: tf.Tensor, f: NewtonApprox): tf.Tensor {
  let y = tf.sub(f.c0, tf.mul(v, f.c1));
  for (let k = 0; k < f.iterations; k++) y = tf.mul(tf.mul(y, 0.5), tf.sub(3, tf.mul(v, tf.square(y))));
  return y;
}

/** Layer norm over the last axis; returns the output and the per-token variance (for ranges). */
export function layerNormTf(
  x: tf.Tensor,
  gamma: tf.Tensor,
  beta: tf.Tensor,
  epsilon: number,
  poly: PolyNormSpec | null,
): { y: tf.Tensor; variance: tf.Tensor } {
  const mu = tf.mean(x, -1, true);
  const xc = tf.sub(x, mu);
  const variance = tf.mean(tf.square(xc), -1, true);
  const ve = tf.add(variance, epsilon);
  const r = poly ? invSqrtTf(ve, fitInvSqrt(poly.range[0], poly.range[1], poly.iterations)) : tf.rsqrt(ve);
  return { y: tf.add(tf.mul(tf.mul(xc, r), gamma), beta), variance };
}
