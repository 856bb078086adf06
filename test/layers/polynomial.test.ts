import { expect } from 'chai';
import * as tf from '@tensorflow/tfjs-core';
import { evalPolynomial, polynomialTf } from '../../src/layers/polynomial.js';
import { fitReluPolynomial } from '../../src/layers/relu-approx.js';
import { initBackend } from '../../src/train/backend.js';
import { expectAllClose } from '../helpers/close.js';

describe('polynomial activations', () => {
  before(async () => {
    await initBackend();
  });

  it('evalPolynomial matches a*x^2 + b*x + c written out', () => {
    const [c, b, a] = [0.3, -1.2, 0.7];
    for (const x of [-3, -0.5, 0, 1.25, 4]) expect(evalPolynomial([c, b, a], x)).to.be.closeTo(a * x * x + b * x + c, 1e-12);
  });

  it('the tensor form matches the plain reference', () => {
    const xs = [-2.5, -1, 0, 0.5, 3];
    const coeffs = [0.1, -0.4, 0.25, 0.05];
    const y = polynomialTf(tf.tensor1d(xs), tf.tensor1d(coeffs)).dataSync();
    expectAllClose(y, xs.map((x) => evalPolynomial(coeffs, x)), { atol: 1e-5 });
  });

  it('quad gradients w.r.t. input and coefficients match finite differences', () => {
    const xs = [-1.7, -0.3, 0.4, 2.2];
    const coeffs = [0.2, 0.9, 0.15];
    // loss = sum(w_i * quad(x_i)) with fixed weights so every element matters differently
    const w = [0.5, -1, 2, 0.25];
    const loss = (x: tf.Tensor, c: tf.Tensor) => tf.sum(tf.mul(polynomialTf(x, c as tf.Tensor1D), tf.tensor1d(w)));
    const [gx, gc] = tf.grads((x: tf.Tensor, c: tf.Tensor) => loss(x, c))([tf.tensor1d(xs), tf.tensor1d(coeffs)]);
    const f = (x: number[], c: number[]) => x.reduce((acc, xi, i) => acc + w[i] * evalPolynomial(c, xi), 0);
    const h = 1e-4;
    const numGx = xs.map((_, i) => {
      const up = xs.slice();
      const dn = xs.slice();
      up[i] += h;
      dn[i] -= h;
      return (f(up, coeffs) - f(dn, coeffs)) / (2 * h);
    });
    const numGc = coeffs.map((_, j) => {
      const up = coeffs.slice();
      const dn = coeffs.slice();
      up[j] += h;
      dn[j] -= h;
      return (f(xs, up) - f(xs, dn)) / (2 * h);
    });
    expectAllClose(gx.dataSync(), numGx, { atol: 1e-3, rtol: 1e-3 }, 'd/dx');
    expectAllClose(gc.dataSync(), numGc, { atol: 1e-3, rtol: 1e-3 }, 'd/dcoeffs');
  });

  it('the ReLU fit is close to ReLU inside its range', () => {
    const c = fitReluPolynomial(4, [-4, 4]);
    let worst = 0;
    for (let x = -4; x <= 4; x += 0.05) worst = Math.max(worst, Math.abs(evalPolynomial(c, x) - Math.max(0, x)));
    expect(worst).to.be.lessThan(0.35);
    // and far outside the range it is not ReLU any more, which is why ranges matter
    expect(Math.abs(evalPolynomial(c, 12) - 12)).to.be.greaterThan(1);
  });
});
