import { expect } from 'chai';
import { dequantize, dequantizeWide, quantize, quantizeWide, ringAddInto } from '../../src/federated/fixed-point.js';
import { applyPairwiseMasks } from '../../src/federated/masks.js';
import { PartyIdentity } from '../../src/federated/identity.js';
import { AggregationCrypto, CiphertextAdder } from '../../src/federated/ckks-aggregate.js';
import { averagePrecision } from '../../src/federated/metrics.js';
import { HepolyError } from '../../src/util/errors.js';

describe('federated/secure sum building blocks', () => {
  const values = [
    Float64Array.from({ length: 300 }, (_, i) => Math.sin(i) * 3),
    Float64Array.from({ length: 300 }, (_, i) => Math.cos(i) - 0.5),
    Float64Array.from({ length: 300 }, (_, i) => (i % 7) / 10 - 1000),
  ];
  const plainSum = values[0].map((_, i) => values[0][i] + values[1][i] + values[2][i]);
  const parties = ['a', 'b', 'c'].map((name) => ({ name, identity: new PartyIdentity() }));
  const peers = parties.map((p) => ({ name: p.name, publicKey: p.identity.publicKey }));

  it('pairwise masks hide each contribution and cancel exactly in the sum', () => {
    const masked = parties.map((p, k) => {
      const r = quantize(values[k]);
      applyPairwiseMasks(r, p.name, p.identity, peers, 'round-1#0');
      return r;
    });
    // a masked contribution is far from the value it hides
    const decodedA = dequantize(masked[0]);
    const far = decodedA.filter((v, i) => Math.abs(v - values[0][i]) > 1).length;
    expect(far).to.be.above(290);
    const acc = masked[0].slice();
    ringAddInto(acc, masked[1]);
    ringAddInto(acc, masked[2]);
    const sum = dequantize(acc);
    for (let i = 0; i < sum.length; i++) expect(sum[i]).to.be.closeTo(plainSum[i], 3 * 2 ** -17);
  });

  it('masks of another attempt differ (a redone round draws new masks)', () => {
    const r1 = quantize(values[0]);
    const r2 = quantize(values[0]);
    applyPairwiseMasks(r1, 'a', parties[0].identity, peers, 'round-1#0');
    applyPairwiseMasks(r2, 'a', parties[0].identity, peers, 'round-1#1');
    expect(r1.filter((v, i) => v !== r2[i]).length).to.be.above(290);
  });

  it('wide fixed point sums values beyond +-32768 exactly', () => {
    const big = [Float64Array.of(8e9, -3.25e9, 12.5), Float64Array.of(1.5e9, 2e9, -0.125)];
    const acc = quantizeWide(big[0]);
    ringAddInto(acc, quantizeWide(big[1]));
    expect(Array.from(dequantizeWide(acc))).to.deep.equal([9.5e9, -1.25e9, 12.375]);
  });

  it('CKKS: encrypted masked contributions added without keys decrypt to the plain sum', async function () {
    this.timeout(60000);
    const holder = await AggregationCrypto.generate(4096);
    const other = await AggregationCrypto.fromSecretKey(4096, holder.secretKeyBytesForCeremony());
    const adder = await CiphertextAdder.create(4096);
    const cts = parties.map((p, k) => {
      const r = quantize(values[k]);
      applyPairwiseMasks(r, p.name, p.identity, peers, 'round-2#0');
      return (k === 0 ? holder : other).encrypt(r);
    });
    const sum = dequantize(other.decrypt(adder.sum(cts), 300));
    for (let i = 0; i < sum.length; i++) expect(sum[i]).to.be.closeTo(plainSum[i], 3 * 2 ** -17);
  });

  it('sealed envelopes open only for the intended peer', () => {
    const [a, b, c] = parties;
    const env = a.identity.seal(b.identity.publicKey, 'ckks-secret-key', Uint8Array.of(1, 2, 3));
    expect(Array.from(b.identity.open(a.identity.publicKey, 'ckks-secret-key', env))).to.deep.equal([1, 2, 3]);
    expect(() => c.identity.open(a.identity.publicKey, 'ckks-secret-key', env)).to.throw(HepolyError, /failed authentication/);
  });

  it('average precision matches a hand computation', () => {
    // scores ranked: + (P=1, R=.5), - , + (P=2/3, R=1): AP = .5*1 + .5*2/3
    expect(averagePrecision([0.9, 0.8, 0.7], [true, false, true])).to.be.closeTo(0.5 + 1 / 3, 1e-12);
  });
});
