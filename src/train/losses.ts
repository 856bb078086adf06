import * as tf from '@tensorflow/tfjs-core';

/** Mean softmax cross-entropy of logits against integer labels. */
export function crossEntropy(logits: tf.Tensor2D, labels: tf.Tensor1D, classes: number): tf.Scalar {
  return tf.losses.softmaxCrossEntropy(tf.oneHot(labels, classes), logits) as tf.Scalar;
}

/**
 * Hinton et al.'s distillation loss:
 *   alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(y, s)
 * averaged over the batch. T^2 keeps the soft term's gradients on the scale of the hard one.
 */
export function distillationLoss(
  student: tf.Tensor2D,
  teacher: tf.Tensor2D,
  labels: tf.Tensor1D,
  classes: number,
  temperature: number,
  alpha: number,
): tf.Scalar {
  const logPt = tf.logSoftmax(tf.div(teacher, temperature));
  const logPs = tf.logSoftmax(tf.div(student, temperature));
  const kl = tf.mean(tf.sum(tf.mul(tf.exp(logPt), tf.sub(logPt, logPs)), 1));
  const soft = tf.mul(kl, temperature * temperature);
  if (alpha >= 1) return soft as tf.Scalar;
  return tf.add(tf.mul(soft, alpha), tf.mul(crossEntropy(student, labels, classes), 1 - alpha)) as tf.Scalar;
}

/** Range penalty of one activation input: mean(relu(|x| - bound)^2); zero inside the range. */
export function rangePenalty(x: tf.Tensor, bound: number): tf.Scalar {
  return tf.mean(tf.square(tf.relu(tf.sub(tf.abs(x), bound))));
}

/** Fraction of values with |x| > bound. */
export function outOfRangeFraction(x: tf.Tensor, bound: number): tf.Scalar {
  return tf.mean(tf.cast(tf.greater(tf.abs(x), bound), 'float32'));
}
