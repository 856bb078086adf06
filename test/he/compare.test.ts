import { expect } from 'chai';
import { compareLogits } from '../../src/he/compare.js';

describe('he/compare: encrypted logits against the plaintext model', () => {
  it('counts agreement and accuracy, and tells a plaintext near-tie from a real disagreement', () => {
    // samples 0 and 2 agree; sample 1 is a near-tie flipped by 1e-4 of noise
    const plain = [3, 1, 0, 2.00005, 2.0, 0, 0, 5, 1];
    const he = [3.0001, 1, 0, 1.99995, 2.00005, 0, 0, 5.0001, 1];
    const labels = [0, 1, 1];
    const r = compareLogits(plain, he, labels, 3, 3);
    expect(r.agree).to.equal(2);
    expect(r.plainCorrect).to.equal(2);
    expect(r.heCorrect).to.equal(3);
    expect(r.disagreements.map((d) => d.index)).to.deep.equal([1]);
    expect(r.disagreements[0].plaintextGap).to.be.closeTo(5e-5, 1e-9);
    expect(r.nearTies).to.equal(1);
    expect(r.maxAbsError).to.be.closeTo(1e-4, 1e-9);
    expect(r.logitRange).to.equal(5);

    expect(r.agreeingMaxError).to.be.closeTo(1e-4, 1e-9);

    // the same flip with an error 100x the agreeing samples' is a fault, not noise
    const fault = compareLogits([3, 1, 0, 2.00005, 2.0, 0], [3.0001, 1, 0, 1.99, 2.01, 0], [0, 0], 2, 3);
    expect(fault.disagreements).to.have.length(1);
    expect(fault.nearTies).to.equal(0);
    // with no agreeing sample there is no noise level to explain a flip
    expect(compareLogits([10, 0], [4.9, 5.1], [0], 1, 2).nearTies).to.equal(0);
  });

  it('a NaN logit (a broken decryption) is an infinite error, never a perfect one', () => {
    const r = compareLogits([1, 0], [NaN, 0], [0], 1, 2);
    expect(r.maxAbsError).to.equal(Infinity);
  });
});
