import * as tf from '@tensorflow/tfjs-core';

/**
 * Training-mode batch normalization over all axes but the last, with the closed-form backward
 * pass written as one custom gradient:
 *   xhat = (x - mean) / sqrt(var + eps),  y = gamma * xhat + beta
 *   dx     = gamma / sqrt(var + eps) * (dy - mean(dy) - xhat * mean(dy * xhat))
 *   dgamma = sum(dy * xhat),  dbeta = sum(dy)
 * tfjs differentiates its own batchNorm through Tile ops that the wasm backend runs as a
 * scalar loop (measured: Tile was the largest kernel of a ResNet step); this form needs only
 * element-wise ops and reductions over the batch axes.
 * The batch mean and (biased) variance are returned for the running estimates; they enter the
 * custom op as inputs whose gradient is zero, because dx above already accounts for them.
 */
export function batchNormTrain(
  x: tf.Tensor,
  gamma: tf.Tensor,
  beta: tf.Tensor,
  epsilon: number,
): { y: tf.Tensor; mean: tf.Tensor; variance: tf.Tensor } {
  const axes = Array.from({ length: x.rank - 1 }, (_, i) => i);
  const mean = tf.mean(x, axes);
  const variance = tf.mean(tf.square(tf.sub(x, mean)), axes);
  const op = tf.customGrad(((xi: tf.Tensor, g: tf.Tensor, b: tf.Tensor, m: tf.Tensor, v: tf.Tensor, save: tf.GradSaveFunc) => {
    const invStd = tf.rsqrt(tf.add(v, epsilon));
    const xhat = tf.mul(tf.sub(xi, m), invStd);
    save([xhat, invStd, g]);
    return {
      value: tf.add(tf.mul(xhat, g), b),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sxhat, sinv, sg] = saved;
        const dbeta = tf.sum(dy, axes);
        const dgamma = tf.sum(tf.mul(dy, sxhat), axes);
        const n = dy.size / dy.shape[dy.rank - 1];
        const dx = tf.mul(tf.mul(sg, sinv), tf.sub(tf.sub(dy, tf.div(dbeta, n)), tf.mul(sxhat, tf.div(dgamma, n))));
        return [dx, dgamma, dbeta, tf.zerosLike(m), tf.zerosLike(v)];
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]) as unknown as (...t: tf.Tensor[]) => tf.Tensor;
  return { y: op(x, gamma, beta, mean, variance), mean, variance };
}
