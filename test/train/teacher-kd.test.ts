import { expect } from 'chai';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../src/train/backend.js';
import { distillationLoss } from '../../src/train/losses.js';
import { expectAllClose } from '../helpers/close.js';

const softmax = (z: number[], T = 1) => {
  const e = z.map((v) => Math.exp(v / T));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
};

/**
 * The suspected defects of the distillation study, checked on the gradient the student
 * actually receives (the loss value alone would not show a missing T^2 or an unscaled logit):
 * Hinton et al.: d/ds [alpha T^2 KL(pt || ps) + (1 - alpha) CE(y, s)]
 *              = alpha T (softmax(s/T) - softmax(t/T)) + (1 - alpha)(softmax(s) - onehot(y)), per sample / batch.
 */
describe('train/teacher-kd: the distillation gradient is Hinton et al.\'s', () => {
  before(async () => {
    await initBackend();
  });

  for (const [T, alpha] of [
    [4, 0.7],
    [1, 0.5],
    [8, 1],
  ] as const) {
    it(`T=${T}, alpha=${alpha}: gradient with respect to the student's logits`, () => {
      const s = [
        [2.0, -1.0, 0.5],
        [0.1, 0.3, -2.0],
      ];
      const t = [
        [3.0, 0.0, 1.0],
        [-1.0, 2.0, 0.0],
      ];
      const y = [0, 1];
      const g = tf.grad((x: tf.Tensor) => distillationLoss(x as tf.Tensor2D, tf.tensor2d(t), tf.tensor1d(y, 'int32'), 3, T, alpha))(tf.tensor2d(s));
      const expected = s.flatMap((row, i) => {
        const ps = softmax(row, T);
        const pt = softmax(t[i], T);
        const p = softmax(row);
        return row.map((_, c) => (alpha * T * (ps[c] - pt[c]) + (1 - alpha) * (p[c] - (c === y[i] ? 1 : 0))) / s.length);
      });
      expectAllClose(g.dataSync(), expected, { atol: 1e-5, rtol: 1e-4 });
    });
  }

  it('a student equal to its teacher gets no gradient from the soft term (alpha = 1)', () => {
    const z = tf.tensor2d([[1.5, -0.5, 0.2]]);
    const g = tf.grad((x: tf.Tensor) => distillationLoss(x as tf.Tensor2D, tf.tensor2d([[1.5, -0.5, 0.2]]), tf.tensor1d([2], 'int32'), 3, 4, 1))(z);
    expect(Math.max(...Array.from(g.dataSync(), Math.abs))).to.be.below(1e-6);
  });
});
