import { expect } from 'chai';
import { fitReciprocal, reciprocalIterationsFor } from '../../src/layers/reciprocal.js';
import { DIVISION_HEADROOM, lowerDivision, lowerReciprocal, normalizedDivision } from '../../src/ops/sequence-he.js';
import type { HeValue, LowerOps, ProductPairs } from '../../src/ops/types.js';

/**
 * Power-softmax's division (src/ops/sequence-he.ts) lowered onto a float64 LowerOps that counts
 * levels the way the compiler does: a product is one level above its deepest operand, an
 * affine map folds into its neighbour (no level). Goldschmidt's quotient must match num / den
 * within the Newton bound it shares, in 2 + k levels where Newton and the product with the
 * numerator take 1 + 2k, and only the rows are iterated.
 */

interface Val extends HeValue {
  data: Float64Array;
  level: number;
}

/** With `scale`, an affine map's factors are rounded to multiples of 1/scale, as a CKKS plaintext's are. */
function floatOps(scale = 0): LowerOps {
  const quantize = (f: number) => (scale ? Math.round(f * scale) / scale : f);
  const v = (x: HeValue) => x as Val;
  const product = (a: HeValue, b: HeValue, pairs: ProductPairs, outShape: number[], extra?: { plus?: { x: HeValue; factors: Float64Array }; bias?: Float64Array }): HeValue => {
    const n = outShape.reduce((p, q) => p * q, 1);
    const data = new Float64Array(n);
    for (let k = 0; k < pairs.out.length; k++) data[pairs.out[k]] += (pairs.sign ? pairs.sign[k] : 1) * v(a).data[pairs.a[k]] * v(b).data[pairs.b[k]];
    let level = Math.max(v(a).level, v(b).level) + 1;
    if (extra?.plus) {
      for (let i = 0; i < n; i++) data[i] += extra.plus.factors[i] * v(extra.plus.x).data[i];
      level = Math.max(level, v(extra.plus.x).level + 1);
    }
    if (extra?.bias) for (let i = 0; i < n; i++) data[i] += extra.bias[i];
    return { shape: outShape, data, level } as Val;
  };
  const unsupported = () => {
    throw new Error('not used by the division');
  };
  return {
    product,
    affine: (x, factors, shift) => ({ shape: x.shape, data: v(x).data.map((d, i) => quantize(factors[i]) * d + shift[i]), level: v(x).level }) as Val,
    weighted: unsupported,
    polynomial: unsupported,
    struct: unsupported,
    sum: unsupported,
    oneHotInput: unsupported,
  };
}

describe('power-softmax division (Goldschmidt)', () => {
  const rows = 6;
  const width = 3;
  const lo = 0.05;
  const hi = 2000;
  const den: Val = { shape: [rows], data: Float64Array.from([0.05, 0.3, 1, 17, 480, 2000]), level: 0 };
  const num: Val = { shape: [rows, width], data: Float64Array.from({ length: rows * width }, (_, i) => Math.sin(i + 1) * 3), level: 0 };
  const k = reciprocalIterationsFor(lo, hi, 1e-3);
  const f = fitReciprocal(lo, hi, k);

  it('num / den within the Newton bound, in 2 + k levels', () => {
    const q = lowerDivision(floatOps(), num, den, width, f) as Val;
    expect(q.shape).to.deep.equal([rows, width]);
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < width; c++) {
        const exact = num.data[r * width + c] / den.data[r];
        expect(Math.abs(q.data[r * width + c] - exact)).to.be.at.most(f.errorBound * Math.abs(exact) + 1e-12, `row ${r} col ${c}`);
      }
    }
    expect(q.level).to.equal(2 + k);
  });

  it('k - 1 levels fewer than Newton followed by the product with the numerator', () => {
    const he = floatOps();
    const y = lowerReciprocal(he, den, f) as Val;
    const newton = y.level + 1; // then num[r][c] * y[r]
    const q = lowerDivision(he, num, den, width, f) as Val;
    expect(k).to.be.above(5);
    expect(newton - q.level).to.equal(k - 1);
  });

  describe('normalized (both operands times sqrt(c1) x headroom)', () => {
    // vit-poly's second attention: denominators observed in [0.60, 50157], fitted on [0.40, 75236]
    const raw = fitReciprocal(0.4, 75236, reciprocalIterationsFor(0.4, 75236, 1e-3));
    const dens = Float64Array.from([0.6, 5, 300, 5000, 20000, 50000]);
    const nums = Float64Array.from({ length: rows * width }, (_, i) => Math.sin(i + 1) * 3 * dens[Math.floor(i / width)]);
    const at = (a: Float64Array, shape: number[]): Val => ({ shape, data: a, level: 0 });
    const scaled = (a: Float64Array, s: number) => a.map((x) => x * s);
    /** max |q - n / d| over the rows' quotients */
    const errorOf = (q: Val, n: Float64Array, d: Float64Array) => Math.max(...Array.from(q.data, (x, i) => Math.abs(x - n[i] / d[Math.floor(i / width)])));
    // |quotient| <= 3: the error relative to that
    const maxError = (q: Val) => errorOf(q, nums, dens) / 3;

    it('has a start with c1 = 1 / headroom^2, the same iterations and the same error bound', () => {
      const { scale, approx } = normalizedDivision(raw);
      expect(scale).to.be.closeTo(Math.sqrt(raw.c1) * DIVISION_HEADROOM, 1e-12);
      expect(approx.c1 * DIVISION_HEADROOM ** 2).to.be.closeTo(1, 1e-9);
      expect(approx.iterations).to.equal(raw.iterations);
      expect(approx.errorBound).to.be.closeTo(raw.errorBound, 1e-12);
    });

    it('survives plaintext factors rounded to a 2^26 scale, where the raw start (c1 = 1.4e-9 rounds to 0) diverges', () => {
      const { scale, approx } = normalizedDivision(raw);
      const normalized = lowerDivision(floatOps(2 ** 26), at(scaled(nums, scale), [rows, width]), at(scaled(dens, scale), [rows]), width, approx) as Val;
      const direct = lowerDivision(floatOps(2 ** 26), at(nums, [rows, width]), at(dens, [rows]), width, raw) as Val;
      expect(raw.c1 * 2 ** 26).to.be.below(0.5);
      expect(maxError(normalized)).to.be.below(2e-3);
      expect(maxError(direct)).to.satisfy((e: number) => !(e < 1), 'the raw start should diverge');
    });

    it('keeps the smallest denominators above CKKS noise, where full normalization (headroom 1) turns them negative', () => {
      // the served tiny ViT's range: denominators observed in [0.00103, 2449]
      const tiny = fitReciprocal(0.00103 / 1.5, 2449 * 1.5, reciprocalIterationsFor(0.00103 / 1.5, 2449 * 1.5, 1e-3));
      const d = Float64Array.from([0.00103, 0.01, 1, 30, 900, 2449]);
      const n = Float64Array.from({ length: rows * width }, (_, i) => Math.cos(i) * d[Math.floor(i / width)]);
      const noise = 1.3e-6; // absolute rescale noise at 2^30, N=8192, on the denominator's ciphertext
      const run = (headroom: number) => {
        const { scale, approx } = normalizedDivision(tiny, headroom);
        const q = lowerDivision(floatOps(), at(scaled(n, scale), [rows, width]), at(d.map((x) => x * scale - noise), [rows]), width, approx) as Val;
        return errorOf(q, n, d);
      };
      expect(run(DIVISION_HEADROOM)).to.be.below(0.2);
      expect(run(1)).to.satisfy((e: number) => !(e < 1), 'fully normalized, the smallest denominator goes negative and diverges');
    });
  });
});
