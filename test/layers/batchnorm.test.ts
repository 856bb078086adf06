import { expect } from 'chai';
import * as tf from '@tensorflow/tfjs-core';
import { batchNormTrain } from '../../src/layers/batchnorm.js';
import { initBackend } from '../../src/train/backend.js';
import { expectAllClose } from '../helpers/close.js';

describe('batchnorm (training mode, custom gradient)', () => {
  before(async () => {
    await initBackend();
  });

  for (const shape of [[6, 5], [3, 4, 5, 2]]) {
    it(`matches tfjs moments + batchNorm in value and gradient, shape [${shape}]`, () => {
      const c = shape[shape.length - 1];
      const x = tf.randomNormal(shape, 1, 2, 'float32', 7);
      const gamma = tf.randomNormal([c], 1, 0.3, 'float32', 8);
      const beta = tf.randomNormal([c], 0, 0.3, 'float32', 9);
      const w = tf.randomNormal(shape, 0, 1, 'float32', 10);
      const axes = shape.slice(0, -1).map((_, i) => i);
      const reference = (xi: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => {
        const { mean, variance } = tf.moments(xi, axes);
        return tf.batchNorm(xi, mean, variance, b, g, 1e-3);
      };
      const ours = (xi: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => batchNormTrain(xi, g, b, 1e-3).y;
      expectAllClose(ours(x, gamma, beta).dataSync(), reference(x, gamma, beta).dataSync(), { atol: 1e-4 }, 'value');
      const loss = (f: typeof ours) => (xi: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(f(xi, g, b), w));
      const gOurs = tf.grads(loss(ours))([x, gamma, beta]);
      const gRef = tf.grads(loss(reference))([x, gamma, beta]);
      ['dx', 'dgamma', 'dbeta'].forEach((name, i) => expectAllClose(gOurs[i].dataSync(), gRef[i].dataSync(), { atol: 2e-3, rtol: 2e-3 }, name));
      const { mean, variance } = batchNormTrain(x, gamma, beta, 1e-3);
      expectAllClose(mean.dataSync(), tf.moments(x, axes).mean.dataSync(), { atol: 1e-5 }, 'mean');
      expectAllClose(variance.dataSync(), tf.moments(x, axes).variance.dataSync(), { atol: 1e-4 }, 'variance');
      expect(mean.shape).to.deep.equal([c]);
    });
  }
});
