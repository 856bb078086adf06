import { expect } from 'chai';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-cpu';
import { checkEvenPower, evenPowerTf, powerSoftmax, powerSoftmaxGrad, powerSoftmaxTf } from '../../src/layers/power-softmax.js';
import {
  fitInvSqrt,
  fitReciprocal,
  invSqrtApprox,
  reciprocalApprox,
  reciprocalIterationsFor,
} from '../../src/layers/reciprocal.js';
import { layerNorm, layerNormTf } from '../../src/layers/norm.js';
import { expectAllClose } from '../helpers/close.js';

describe('power-softmax', () => {
  before(async () => {
    await tf.setBackend('cpu');
  });

  it('forward: hand-computed weights and denominator (p = 2)', () => {
    // s^2 = [1, 4, 0.25], sum 5.25
    const { y, denominator } = powerSoftmax([1, -2, 0.5], 2);
    expect(denominator).to.equal(5.25);
    expectAllClose(y, [1 / 5.25, 4 / 5.25, 0.25 / 5.25], { atol: 1e-12 });
    // p = 4: [1, 16, 0.0625], sum 17.0625; eps joins the denominator
    const r4 = powerSoftmax([1, -2, 0.5], 4, 0.9375);
    expect(r4.denominator).to.equal(18);
    expectAllClose(r4.y, [1 / 18, 16 / 18, 0.0625 / 18], { atol: 1e-12 });
  });

  it('gradient: hand-computed values, and tfjs autograd agrees', () => {
    // g = e_0: ds_k = 2 s_k / 5.25 * (g_k - y_0), y_0 = 1/5.25
    const y0 = 1 / 5.25;
    const expected = [(2 * 1) / 5.25 * (1 - y0), (2 * -2) / 5.25 * (0 - y0), (2 * 0.5) / 5.25 * (0 - y0)];
    expectAllClose(powerSoftmaxGrad([1, -2, 0.5], [1, 0, 0], 2), expected, { atol: 1e-12 });
    expectAllClose(expected, [0.30839002, 0.14512472, -0.03628118], { atol: 1e-8 });
    for (const p of [2, 4, 6]) {
      const s = [0.3, -1.1, 0.7, 1.4];
      const g = [0.5, -1, 2, 0.25];
      const grad = tf.grad((x: tf.Tensor) => tf.sum(tf.mul(powerSoftmaxTf(x, p, 0.01).y, tf.tensor1d(g))))(tf.tensor1d(s));
      expectAllClose(grad.dataSync(), powerSoftmaxGrad(s, g, p, 0.01), { atol: 1e-5, rtol: 1e-4 }, `p=${p}`);
      const fwd = powerSoftmaxTf(tf.tensor1d(s), p, 0.01);
      expectAllClose(fwd.y.dataSync(), powerSoftmax(s, p, 0.01).y, { atol: 1e-6, rtol: 1e-5 });
    }
  });

  it('even powers by squaring match x^p; odd p is refused', () => {
    const x = tf.tensor1d([-1.5, 0.5, 2]);
    expectAllClose(evenPowerTf(x, 6).dataSync(), [1.5 ** 6, 0.5 ** 6, 64], { rtol: 1e-6 });
    expect(() => checkEvenPower(3)).to.throw(/even integer/);
    expect(() => powerSoftmax([1, 2], 1)).to.throw(/even integer/);
    expect(() => checkEvenPower(2.5)).to.throw(/even integer/);
  });
});

describe('reciprocal and inverse square root by Newton iterations', () => {
  const grid = (lo: number, hi: number, n = 2000) => Array.from({ length: n + 1 }, (_, i) => lo * (hi / lo) ** (i / n));

  it('reciprocal: the error squares each step and stays under the bound on its range', () => {
    for (const [lo, hi] of [
      [1, 4],
      [0.5, 50],
      [0.01, 10],
    ]) {
      const f0 = fitReciprocal(lo, hi, 0);
      let worst0 = 0;
      for (const a of grid(lo, hi)) worst0 = Math.max(worst0, Math.abs(1 - a * reciprocalApprox(a, f0)));
      // the minimax start's error is attained (equioscillation), not just bounded
      expect(worst0).to.be.closeTo(f0.startError, 1e-3);
      const k = reciprocalIterationsFor(lo, hi, 1e-4);
      const f = fitReciprocal(lo, hi, k);
      expect(f.errorBound).to.be.at.most(1e-4);
      for (const a of grid(lo, hi)) {
        const e0 = 1 - a * (f.c0 - f.c1 * a);
        const ek = 1 - a * reciprocalApprox(a, f);
        expect(Math.abs(ek)).to.be.at.most(f.errorBound * (1 + 1e-9) + 1e-15);
        // exact identity: e_k = e_0^(2^k)
        expect(ek).to.be.closeTo(e0 ** 2 ** k, 1e-12);
      }
    }
    // a narrow range needs few iterations, a wide one more
    expect(reciprocalIterationsFor(1, 2, 1e-3)).to.be.below(reciprocalIterationsFor(1, 1000, 1e-3));
    expect(() => fitReciprocal(0, 1, 3)).to.throw(/0 < lo <= hi/);
  });

  it('inverse square root: error under its bound on the range', () => {
    for (const [lo, hi, k] of [
      [0.5, 4, 3],
      [0.1, 10, 5],
      [0.05, 20, 7],
    ]) {
      const f = fitInvSqrt(lo, hi, k);
      expect(f.errorBound).to.be.below(0.5);
      for (const a of grid(lo, hi)) {
        const y = invSqrtApprox(a, f);
        expect(Math.abs(1 - a * y * y)).to.be.at.most(f.errorBound + 1e-9);
      }
    }
    expect(fitInvSqrt(0.1, 10, 5).errorBound).to.be.below(1e-3);
  });

  it('layer norm: tensor version matches the reference, exact and polynomial', async () => {
    await tf.setBackend('cpu');
    const x = [0.3, -1.2, 2.0, 0.7, -0.4, 1.1];
    const gamma = [1, 0.5, 2, 1, 1, 0.8];
    const beta = [0, 0.1, -0.2, 0, 0.3, 0];
    for (const poly of [null, { range: [0.05, 20] as [number, number], iterations: 5 }]) {
      const ref = layerNorm(x, gamma, beta, 1e-5, poly);
      const t = layerNormTf(tf.tensor2d([x]), tf.tensor1d(gamma), tf.tensor1d(beta), 1e-5, poly);
      expectAllClose(t.y.dataSync(), ref.y, { atol: 1e-5, rtol: 1e-4 });
      expect(t.variance.dataSync()[0]).to.be.closeTo(ref.variance, 1e-5);
    }
    // the polynomial version is close to the exact one inside its range
    const exact = layerNorm(x, gamma, beta, 0).y;
    const approx = layerNorm(x, gamma, beta, 0, { range: [0.1, 10], iterations: 5 }).y;
    expectAllClose(approx, exact, { atol: 1e-3, rtol: 1e-3 });
  });
});
