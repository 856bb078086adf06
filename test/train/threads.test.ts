import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/**
 * Training on two threads (HEPOLY_WASM_THREADS=2: tfjs-backend-wasm's threaded build, the
 * convolution gradients split across a kernel pool) gives bit-for-bit the weights of one
 * thread: the pool splits only over output elements. Each side is a fresh process, because
 * the backend and its thread count are chosen once per process.
 */

const CHILD = fileURLToPath(new URL('./helpers/train-steps.ts', import.meta.url));

function trainWith(threads: number): { threads: number; loss: number; weights: string } {
  const out = execFileSync(process.execPath, ['--import', 'tsx', CHILD], {
    encoding: 'utf8',
    env: { ...process.env, HEPOLY_WASM_THREADS: String(threads), HEPOLY_BACKEND: '' },
  });
  return JSON.parse(out.trim().split('\n').at(-1)!);
}

describe('training on two threads', function () {
  this.timeout(120_000);
  it('a small ResNet trains to the same weight bits on 1 and 2 threads', () => {
    const one = trainWith(1);
    const two = trainWith(2);
    expect(one.threads).to.equal(1);
    expect(two.threads, 'the kernel pool was not used').to.equal(2);
    expect(Number.isFinite(one.loss)).to.equal(true);
    expect(two.weights).to.equal(one.weights);
    expect(two.loss).to.equal(one.loss);
  });
});
