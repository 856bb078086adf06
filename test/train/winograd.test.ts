import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { winogradApplies } from '../../src/train/kernels/winograd.js';

/**
 * Winograd F(2x2, 3x3) convolutions on the wasm backend (src/train/kernels/winograd.ts):
 * forward, dx and dW match float64 direct sums, give the same bits on 1 and 2 threads, and
 * are really taken (the direct kernels give other bits). Each run is a fresh process: the
 * backend's thread count is chosen once per process.
 */

const CHILD = fileURLToPath(new URL('./helpers/winograd-conv.ts', import.meta.url));

interface Result {
  threads: number;
  cases: { y: number; dx: number; dw: number; bits: string }[];
}

function convsWith(threads: number, winograd = true): Result {
  const out = execFileSync(process.execPath, ['--import', 'tsx', CHILD], {
    encoding: 'utf8',
    env: { ...process.env, HEPOLY_WASM_THREADS: String(threads), HEPOLY_WINOGRAD: winograd ? '1' : '0', HEPOLY_BACKEND: '' },
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

describe('Winograd F(2x2, 3x3) convolutions', function () {
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

  it('forward, dx and dW match float64 direct sums, with the same bits on 1 and 2 threads', () => {
    const one = convsWith(1);
    const two = convsWith(2);
    expect(one.threads).to.equal(1);
    expect(two.threads, 'the kernel pool was not used').to.equal(2);
    one.cases.forEach((c, i) => {
      for (const k of ['y', 'dx', 'dw'] as const) expect(c[k], `case ${i} ${k}`).to.be.below(1e-5);
      expect(two.cases[i].bits, `case ${i}: 2 threads`).to.equal(c.bits);
    });
  });

  it('is the path taken: the direct kernels give other bits within the same tolerance', () => {
    const wino = convsWith(1);
    const direct = convsWith(1, false);
    direct.cases.forEach((c, i) => {
      for (const k of ['y', 'dx', 'dw'] as const) expect(c[k], `case ${i} ${k}`).to.be.below(1e-5);
      expect(c.bits, `case ${i}`).to.not.equal(wino.cases[i].bits);
    });
  });
});
