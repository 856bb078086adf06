import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { winogradApplies } from '../../src/train/kernels/winograd.js';

/**
 * Winograd F(4x4, 3x3) and F(2x2, 3x3) convolutions on the wasm backend
 * (src/train/kernels/winograd.ts): forward, dx and dW match float64 direct sums, give the
 * same bits on 1 and 2 threads, and are really taken (the direct kernels give other bits). Each run is a fresh process: the
 * backend's thread count is chosen once per process.
 */

const CHILD = fileURLToPath(new URL('./helpers/winograd-conv.ts', import.meta.url));

interface Result {
  threads: number;
  cases: { y: number; dx: number; dw: number; bits: string }[];
}

function convsWith(threads: number, variant: 0 | 2 | 4): Result {
  const out = execFileSync(process.execPath, ['--import', 'tsx', CHILD], {
    encoding: 'utf8',
    env: { ...process.env, HEPOLY_WASM_THREADS: String(threads), HEPOLY_WINOGRAD: String(variant), HEPOLY_BACKEND: '' },
  });
  return JSON.parse(out.trim().split('\n').at(-1)!);
}

const conv = (over: Partial<Parameters<typeof winogradApplies>[0]> = {}) => ({
  filterHeight: 3,
  filterWidth: 3,
  strideHeight: 1,
  strideWidth: 1,
  dilationHeight: 1,
  dilationWidth: 1,
  inChannels: 16,
  outChannels: 32,
  dataFormat: 'channelsLast',
  padInfo: { top: 1, left: 1 },
  ...over,
});

describe('Winograd convolutions', function () {
  this.timeout(120_000);

  it('takes NHWC 3x3 stride-1 convolutions with >= 8 channels in multiples of 4, and only those', () => {
    expect(winogradApplies(conv())).to.equal(true);
    expect(winogradApplies(conv({ strideHeight: 2, strideWidth: 2 }))).to.equal(false);
    expect(winogradApplies(conv({ filterHeight: 1, filterWidth: 1 }))).to.equal(false);
    expect(winogradApplies(conv({ inChannels: 3 }))).to.equal(false);
    expect(winogradApplies(conv({ outChannels: 18 }))).to.equal(false);
    expect(winogradApplies(conv({ dilationHeight: 2 }))).to.equal(false);
    expect(winogradApplies(conv({ dataFormat: 'channelsFirst' }))).to.equal(false);
  });

  // relative to the largest value; measured: direct <= 1.1e-6, F(2x2) <= 7.4e-7, F(4x4) <= 6.4e-6
  const TOLERANCE = { 0: 5e-6, 2: 5e-6, 4: 3e-5 };
  const runs = new Map<string, Result>();
  const run = (threads: number, variant: 0 | 2 | 4) => {
    const key = `${threads}/${variant}`;
    if (!runs.has(key)) runs.set(key, convsWith(threads, variant));
    return runs.get(key)!;
  };

  for (const variant of [4, 2] as const) {
    it(`F(${variant}x${variant}, 3x3): forward, dx and dW match float64 direct sums, with the same bits on 1 and 2 threads`, () => {
      const one = run(1, variant);
      const two = run(2, variant);
      expect(one.threads).to.equal(1);
      expect(two.threads, 'the kernel pool was not used').to.equal(2);
      one.cases.forEach((c, i) => {
        for (const k of ['y', 'dx', 'dw'] as const) expect(c[k], `case ${i} ${k}`).to.be.below(TOLERANCE[variant]);
        expect(two.cases[i].bits, `case ${i}: 2 threads`).to.equal(c.bits);
      });
    });
  }

  it('is the path taken: F(4x4), F(2x2) and the direct kernels give three sets of bits', () => {
    const direct = run(1, 0);
    direct.cases.forEach((c, i) => {
      for (const k of ['y', 'dx', 'dw'] as const) expect(c[k], `case ${i} ${k}`).to.be.below(TOLERANCE[0]);
      expect(c.bits, `case ${i}`).to.not.equal(run(1, 4).cases[i].bits);
      expect(c.bits, `case ${i}`).to.not.equal(run(1, 2).cases[i].bits);
      expect(run(1, 2).cases[i].bits, `case ${i}`).to.not.equal(run(1, 4).cases[i].bits);
    });
  });
});
