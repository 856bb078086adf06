import * as tf from '@tensorflow/tfjs-core';

/**
 * Power-softmax, the attention normalization HE can evaluate (Zimerman et al., "Power-Softmax:
 * Towards Secure LLM Inference over Encrypted Data"):
 *
 *   y_i = s_i^p / D,   D = eps + sum_j s_j^p,   p an even integer >= 2.
 *
 * Because p is even every term is >= 0, so no max-subtraction is needed (exp's overflow guard,
 * which is not polynomial) and the weights are a convex combination like softmax's. Under HE
 * the power costs log2(p) squarings, the sum is rotations and additions, and 1/D is a Newton
 * iteration on the range of D observed in training (`layers/reciprocal.ts`).
 *
 * Gradient (by hand): dy_i/ds_k = p s_k^(p-1) / D * (delta_ik - y_i), so for an upstream g
 *   ds_k = p s_k^(p-1) / D * (g_k - sum_i g_i y_i).
 *
 * Written twice: plain numbers (`powerSoftmax`, `powerSoftmaxGrad`, the references of the tests
 * and the HE evaluator) and tensors (`powerSoftmaxTf`, differentiated by tfjs autograd).
 */

export function checkEvenPower(p: number): void {
  if (!Number.isInteger(p) || p < 2 || p % 2 !== 0) {
    throw new Error(`power-softmax: p must be an even integer >= 2 (x^p must be non-negative without max-subtraction), got ${p}`);
  }
}

/** s^p on one row of scores; returns the weights and the denominator D. */
export function powerSoftmax(scores: ArrayLike<number>, p: number, eps = 0): { y: Float64Array; denominator: number } {
  checkEvenPower(p);
  const pw = Float64Array.from(scores, (s) => s ** p);
  const d = eps + pw.reduce((a, b) => a + b, 0);
  return { y: pw.map((v) => v / d), denominator: d };
}

/** ds for an upstream gradient g on one row (the hand-derived formula above). */
export function powerSoftmaxGrad(scores: ArrayLike<number>, g: ArrayLike<number>, p: number, eps = 0): Float64Array {
  const { y, denominator: d } = powerSoftmax(scores, p, eps);
  let gy = 0;
  for (let i = 0; i < y.length; i++) gy += g[i] * y[i];
  return Float64Array.from(scores, (s, k) => ((p * s ** (p - 1)) / d) * (g[k] - gy));
}

/** x^p for an even integer p by repeated squaring (square's gradient is cheaper than pow's). */
export function evenPowerTf(x: tf.Tensor, p: number): tf.Tensor {
  checkEvenPower(p);
  let result: tf.Tensor | null = null;
  let base = x;
  let e = p;
  while (e > 0) {
    if (e & 1) result = result ? tf.mul(result, base) : base;
    e >>= 1;
    if (e > 0) base = tf.square(base);
  }
  return result!;
}

/**
 * Power-softmax over the last axis. Returns the weights and the denominator (last axis summed,
 * kept for range statistics: the HE reciprocal is fitted to its observed range).
 */
export function powerSoftmaxTf(scores: tf.Tensor, p: number, eps: number): { y: tf.Tensor; denominator: tf.Tensor } {
  const pw = evenPowerTf(scores, p);
  let d = tf.sum(pw, -1, true);
  if (eps > 0) d = tf.add(d, eps);
  return { y: tf.div(pw, d), denominator: d };
}

/**
 * mean((log d - log hi)_+^2 + (log lo - log d)_+^2): zero for denominators inside [lo, hi].
 * On the log so a denominator 10x too large costs what one 10x too small does; power-softmax
 * is unchanged when a row's scores are scaled, so the network can meet it at no loss of fit.
 */
export function denominatorRangePenalty(d: tf.Tensor, [lo, hi]: [number, number]): tf.Scalar {
  const logD = tf.log(d);
  const above = tf.relu(tf.sub(logD, Math.log(hi)));
  const below = tf.relu(tf.sub(Math.log(lo), logD));
  return tf.mean(tf.add(tf.square(above), tf.square(below)));
}
