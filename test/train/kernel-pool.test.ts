import { expect } from 'chai';
import { compileSimdModule, buildSimdModule } from '../../src/train/kernels/simd-kernels.js';
import { createKernelPool, splitRange, type KernelPool } from '../../src/train/kernels/kernel-pool.js';
import { bnApply, bnGradDx, convFilterGrad, convForward, convInputGrad } from '../../src/train/kernels/kernel-parallel.js';
import { writeColumnRanges } from '../../src/train/kernels/wasm-grad-kernels.js';
import type { Simd } from '../../src/train/kernels/fused-kernels.js';
import { random } from '../helpers/random.js';

/**
 * The multi-threaded convolution kernels (kernel-pool.ts, kernel-parallel.ts: forward, filter
 * and input gradients) on a shared wasm memory, as tfjs-backend-wasm's threaded build has:
 * split over 2 and 3 threads they give bit-for-bit the single-thread result, and that result
 * matches a float64 direct sum.
 */

interface Conv {
  n: number;
  h: number;
  w: number;
  ci: number;
  co: number;
  k: number;
  s: number;
  pad: number;
}

const CASES: Conv[] = [
  { n: 5, h: 9, w: 7, ci: 8, co: 48, k: 3, s: 1, pad: 1 },
  { n: 3, h: 8, w: 8, ci: 4, co: 20, k: 3, s: 2, pad: 1 },
  { n: 4, h: 6, w: 6, ci: 12, co: 16, k: 1, s: 2, pad: 0 },
];


/** Lays a conv's tensors out in `memory` and runs `kernel` over them with `pool` (null: no pool). */
class Layout {
  readonly oh: number;
  readonly ow: number;
  readonly x: Float32Array;
  readonly dy: Float32Array;
  readonly wt: Float32Array; // [k, k, co, ci]
  readonly wf: Float32Array; // [k, k, ci, co]
  private next = 1024;

  constructor(
    readonly c: Conv,
    readonly memory: WebAssembly.Memory,
  ) {
    this.oh = Math.floor((c.h + 2 * c.pad - c.k) / c.s) + 1;
    this.ow = Math.floor((c.w + 2 * c.pad - c.k) / c.s) + 1;
    this.x = random(c.n * c.h * c.w * c.ci, 7);
    this.dy = random(c.n * this.oh * this.ow * c.co, 11);
    this.wt = random(c.k * c.k * c.co * c.ci, 13);
    this.wf = random(c.k * c.k * c.ci * c.co, 17);
  }

  private place(data: Float32Array | Int32Array): number {
    const at = this.next;
    new Uint8Array(this.memory.buffer, at, data.byteLength).set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    this.next += Math.ceil(data.byteLength / 64) * 64;
    return at;
  }

  private ranges(): number {
    const r = new Int32Array(2 * this.c.k + 2);
    writeColumnRanges(r, this.c.k, this.c.s, this.c.pad, this.c.w, this.ow);
    return this.place(r);
  }

  filterGrad(simd: Simd): Float32Array {
    const { n, h, w, ci, co, k, s, pad } = this.c;
    const out = new Float32Array(k * k * ci * co);
    const x = this.place(this.x);
    const dy = this.place(this.dy);
    const dw = this.place(out);
    convFilterGrad(simd, [x, dy, dw, n, h, w, ci, this.oh, this.ow, co, k, k, s, s, pad, this.ranges()]);
    return new Float32Array(this.memory.buffer.slice(dw, dw + out.byteLength));
  }

  inputGrad(simd: Simd): Float32Array {
    const { n, h, w, ci, co, k, s, pad } = this.c;
    const out = new Float32Array(n * h * w * ci);
    const dy = this.place(this.dy);
    const wt = this.place(this.wt);
    const dx = this.place(out);
    convInputGrad(simd, [dy, wt, dx, n, h, w, ci, this.oh, this.ow, co, k, k, s, s, pad, this.ranges()]);
    return new Float32Array(this.memory.buffer.slice(dx, dx + out.byteLength));
  }

  forward(simd: Simd): Float32Array {
    const { n, h, w, ci, co, k, s, pad } = this.c;
    const out = new Float32Array(n * this.oh * this.ow * co);
    const x = this.place(this.x);
    const wf = this.place(this.wf);
    const y = this.place(out);
    convForward(simd, [x, wf, y, n, h, w, ci, this.oh, this.ow, co, k, k, s, s, pad, this.ranges()]);
    return new Float32Array(this.memory.buffer.slice(y, y + out.byteLength));
  }

  /** float64 direct sums of the convolution and both gradients */
  reference(): { y: Float64Array; dw: Float64Array; dx: Float64Array } {
    const { n, h, w, ci, co, k, s, pad } = this.c;
    const dw = new Float64Array(k * k * ci * co);
    const dx = new Float64Array(n * h * w * ci);
    const y = new Float64Array(n * this.oh * this.ow * co);
    for (let b = 0; b < n; b++)
      for (let oy = 0; oy < this.oh; oy++)
        for (let ox = 0; ox < this.ow; ox++)
          for (let ky = 0; ky < k; ky++)
            for (let kx = 0; kx < k; kx++) {
              const iy = oy * s + ky - pad;
              const ix = ox * s + kx - pad;
              if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
              for (let i = 0; i < ci; i++)
                for (let o = 0; o < co; o++) {
                  const at = ((b * this.oh + oy) * this.ow + ox) * co + o;
                  const g = this.dy[at];
                  y[at] += this.x[((b * h + iy) * w + ix) * ci + i] * this.wf[((ky * k + kx) * ci + i) * co + o];
                  dw[((ky * k + kx) * ci + i) * co + o] += this.x[((b * h + iy) * w + ix) * ci + i] * g;
                  dx[((b * h + iy) * w + ix) * ci + i] += this.wt[((ky * k + kx) * co + o) * ci + i] * g;
                }
            }
    return { y, dw, dx };
  }
}

function expectNear(actual: Float32Array, expected: Float64Array, what: string): void {
  expect(actual.length).to.equal(expected.length);
  let worst = 0;
  for (let i = 0; i < actual.length; i++) worst = Math.max(worst, Math.abs(actual[i] - expected[i]));
  expect(worst, `${what}: largest difference from the float64 sum`).to.be.below(1e-4);
}

function bits(a: Float32Array): Uint32Array {
  return new Uint32Array(a.buffer, a.byteOffset, a.length);
}

describe('kernel pool: convolution gradients on several threads', function () {
  const memory = new WebAssembly.Memory({ initial: 64, maximum: 256, shared: true });
  const module = compileSimdModule(true);
  const single: Simd = { k: buildSimdModule(memory, module), memory, pool: null };
  const pools: KernelPool[] = [];
  before(() => {
    for (const threads of [2, 3]) pools.push(createKernelPool(memory, module, threads));
  });
  after(async () => {
    for (const p of pools) await p.close();
  });

  it('splitRange covers a count once, in aligned pieces', () => {
    expect(splitRange(48, 2, 16)).to.deep.equal([[0, 32], [32, 48]]);
    expect(splitRange(20, 3, 4)).to.deep.equal([[0, 8], [8, 12], [12, 20]]);
    expect(splitRange(1, 4)).to.deep.equal([[0, 1]]);
    expect(splitRange(5, 2)).to.deep.equal([[0, 3], [3, 5]]);
  });

  for (const c of CASES) {
    it(`x ${c.n}x${c.h}x${c.w}x${c.ci}, filter ${c.k}x${c.k}x${c.ci}x${c.co}, stride ${c.s}: y, dW and dx on 2 and 3 threads are the 1-thread bits, which match a direct sum`, () => {
      const layout = new Layout(c, memory);
      const ref = layout.reference();
      const dw1 = layout.filterGrad(single);
      const dx1 = layout.inputGrad(single);
      const y1 = layout.forward(single);
      expectNear(y1, ref.y, 'y');
      expectNear(dw1, ref.dw, 'dW');
      expectNear(dx1, ref.dx, 'dx');
      for (const pool of pools) {
        const simd: Simd = { ...single, pool };
        expect([...bits(layout.filterGrad(simd))], `dW on ${pool.threads} threads`).to.deep.equal([...bits(dw1)]);
        expect([...bits(layout.inputGrad(simd))], `dx on ${pool.threads} threads`).to.deep.equal([...bits(dx1)]);
        expect([...bits(layout.forward(simd))], `y on ${pool.threads} threads`).to.deep.equal([...bits(y1)]);
      }
    });
  }

  it('batchnorm row maps (apply, dx) on 2 and 3 threads are the 1-thread bits, which match the formula', () => {
    const rows = 1100;
    const c = 12;
    const at = { x: 1024, dy: 1024 + rows * c * 4, params: 1024 + 2 * rows * c * 4, out: 1024 + 2 * rows * c * 4 + 4096 };
    const f32 = (offset: number, n: number) => new Float32Array(memory.buffer, offset, n);
    f32(at.x, rows * c).set(random(rows * c, 21));
    f32(at.dy, rows * c).set(random(rows * c, 23));
    f32(at.params, 5 * c).set(random(5 * c, 29));
    const p = (k: number, j: number) => f32(at.params, 5 * c)[k * c + j];
    const run = (simd: Simd, which: 'apply' | 'dx') => {
      if (which === 'apply') bnApply(simd, at.x, at.params, at.out, rows, c);
      else bnGradDx(simd, at.dy, at.x, at.params, at.out, rows, c);
      return f32(at.out, rows * c).slice();
    };
    for (const which of ['apply', 'dx'] as const) {
      const one = run(single, which);
      let worst = 0;
      for (let i = 0; i < rows * c; i++) {
        const j = i % c;
        const x = f32(at.x, rows * c)[i];
        const dy = f32(at.dy, rows * c)[i];
        const want = which === 'apply' ? (x - p(0, j)) * p(1, j) * p(2, j) + p(3, j) : p(2, j) * (dy - p(3, j) - (x - p(0, j)) * p(1, j) * p(4, j));
        worst = Math.max(worst, Math.abs(one[i] - want));
      }
      expect(worst, which).to.be.below(1e-5);
      for (const pool of pools) expect([...bits(run({ ...single, pool }, which))], `${which} on ${pool.threads} threads`).to.deep.equal([...bits(one)]);
    }
  });

  it('a part that fails on a helper is reported, and the pool keeps working', () => {
    const pool = pools[0];
    // an address past the end of the memory traps inside the helper's part
    const far = memory.buffer.byteLength + 4096;
    expect(() => pool.run('col_sum', [[1024, 2048, 1, 4, 1], [far, 2048 + 64, 1, 4, 1]])).to.throw(/failed on a helper thread/);
    const layout = new Layout(CASES[0], memory);
    expect([...bits(layout.inputGrad({ ...single, pool }))]).to.deep.equal([...bits(layout.inputGrad(single))]);
  });
});
