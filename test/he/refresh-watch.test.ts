import { expect } from 'chai';
import { compileProgram } from '../../src/he/compile.js';
import { programForward } from '../../src/he/reference.js';
import { RefreshWatch } from '../../src/he/refresh-watch.js';
import { HepolyError } from '../../src/util/errors.js';
import { randomInputs, randomWeights, tinyMlp } from './fixtures.js';

/**
 * he-validate's client-side check at each refresh of a batch pass: what the client decrypted
 * (sample s in slot s) against the plaintext program on the same samples.
 */
describe('he/refresh-watch: the client checks each refresh against the plaintext program', () => {
  const g = tinyMlp();
  const p = compileProgram(g, randomWeights(g, 3));
  const count = 3;
  const x = randomInputs(g, count, 4);
  const per = x.length / count;
  const expected = Array.from({ length: count }, (_, s) => programForward(p, Float64Array.from(x.subarray(s * per, (s + 1) * per))));
  // the hidden tensor after the first activation, as the client would decrypt it: one vector per element
  const t = p.steps.find((s) => s.kind !== 'linear')!.out;
  const elements = [0, 2, 3];
  const decrypted = (noise: (e: number, s: number) => number) =>
    elements.map((e) => Float64Array.from({ length: 8 }, (_, s) => (s < count ? expected[s][t][e] + noise(e, s) : 0)));

  it('logs the error of a refresh that stayed close, and keeps going', () => {
    const lines: string[] = [];
    const w = new RefreshWatch(p, x, count, per, (l) => lines.push(l));
    w.check({ point: 0, tensor: t, elements }, decrypted((e, s) => 1e-4 * (e - s)));
    expect(w.checks).to.have.length(1);
    expect(w.checks[0].maxAbsError).to.be.closeTo(3e-4, 1e-9);
    const mag = Math.max(...elements.flatMap((e) => expected.map((v) => Math.abs(v[t][e]))));
    expect(w.checks[0].maxAbsValue).to.be.closeTo(mag, 1e-12);
    expect(lines[0]).to.match(new RegExp(`refresh 1/0 \\(${p.tensors[t].label.replace(/[()+^]/g, '\\$&')}\\): max error 0.00030`));
  });

  it('stops a run whose values have left the plaintext ones, naming the refresh and the tensor', () => {
    const w = new RefreshWatch(p, x, count, per, () => {});
    let err: unknown = null;
    try {
      w.check({ point: 1, tensor: t, elements }, decrypted(() => 5e4));
    } catch (e) {
      err = e;
    }
    expect(err).to.be.instanceOf(HepolyError);
    expect((err as Error).message).to.contain(`client refresh 2 of 0 (tensor ${p.tensors[t].label})`);
    expect((err as Error).message).to.match(/max error 5\.00e\+4 .*--mode simulate --trace/);
  });

  it('a value the ciphertext lost (NaN) stops the run too', () => {
    const w = new RefreshWatch(p, x, count, per, () => {});
    expect(() => w.check({ point: 0, tensor: t, elements }, decrypted(() => NaN))).to.throw(HepolyError, /left the plaintext program/);
  });
});
