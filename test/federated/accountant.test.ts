import { expect } from 'chai';
import { calibrateSigma, privacySpent, rdpSampledGaussian } from '../../src/federated/accountant.js';
import { HepolyError } from '../../src/util/errors.js';

/**
 * Published reference: the TensorFlow Privacy tutorials README ("Select Parameters" table and
 * the compute_dp_sgd_privacy example, github.com/tensorflow/privacy, tutorials/README.md):
 * MNIST, N = 60000, batch 256, delta = 1e-5, RDP accountant with the default orders:
 *   noise 1.1, 60 epochs -> eps 3.01;  noise 0.7, 45 epochs -> eps 7.10;  noise 1.3, 15 epochs -> eps 1.19.
 * Steps are ceil(epochs * N / batch), as compute_dp_sgd_privacy counts them.
 */
describe('federated/accountant (RDP of the sampled Gaussian)', () => {
  const q = 256 / 60000;
  const steps = (epochs: number) => Math.ceil((epochs * 60000) / 256);

  for (const [sigma, epochs, published] of [
    [1.1, 60, 3.01],
    [0.7, 45, 7.1],
    [1.3, 15, 1.19],
  ] as const) {
    it(`noise ${sigma}, ${epochs} epochs gives the published eps ${published}`, () => {
      const { epsilon } = privacySpent(q, sigma, steps(epochs), 1e-5);
      expect(epsilon).to.be.closeTo(published, 0.006);
    });
  }

  it('without subsampling (q = 1) equals the Gaussian mechanism alpha / (2 sigma^2)', () => {
    expect(rdpSampledGaussian(1, 2, 8)).to.equal(8 / 8);
    // Mironov 2017, Prop. 3 at the order that minimizes it, by hand for one order
    const eps = privacySpent(1, 2, 1, 1e-5, [8]).epsilon;
    expect(eps).to.be.closeTo(1 + Math.log(1e5) / 7, 1e-12);
  });

  it('integer and fractional orders agree where they meet (the two series of Mironov et al. 2019)', () => {
    const a = rdpSampledGaussian(0.01, 1.5, 4);
    const b = rdpSampledGaussian(0.01, 1.5, 4 + 1e-9);
    expect(Math.abs(a - b) / a).to.be.below(1e-5);
  });

  it('calibration finds the noise that spends at most the budget, and refuses epsilon <= 0', () => {
    const sigma = calibrateSigma({ epsilon: 3.01, delta: 1e-5 }, q, steps(60));
    expect(sigma).to.be.closeTo(1.1, 0.01);
    expect(privacySpent(q, sigma, steps(60), 1e-5).epsilon).to.be.at.most(3.01);
    expect(() => calibrateSigma({ epsilon: 0, delta: 1e-5 }, q, 10)).to.throw(HepolyError, /epsilon: expected a positive privacy budget/);
  });
});
