import { expect } from 'chai';
import { fitReciprocal, reciprocalIterationsFor } from '../../src/layers/reciprocal.js';
import { lowerDivision, lowerReciprocal } from '../../src/ops/sequence-he.js';
import type { HeValue, LowerOps, ProductPairs } from '../../src/ops/types.js';

/**
 * Power-softmax's division (src/ops/sequence-he.ts) lowered onto a float64 LowerOps that counts
 * levels the way the compiler does: a product is one level above its deepest operand, an
 * affine map folds into its neighbour (no level). Goldschmidt's quotient must match num / den
 * within the Newton bound it shares, in 1 + k levels where Newton and the product with the
 * numerator take 1 + 2k.
 */

interface Val extends HeValue {
  data: Float64Array;
  level: number;
}

function floatOps(): LowerOps {
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
    affine: (x, factors, shift) => ({ shape: x.shape, data: v(x).data.map((d, i) => factors[i] * d + shift[i]), level: v(x).level }) as Val,
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

  it('num / den within the Newton bound, in 1 + k levels', () => {
    const q = lowerDivision(floatOps(), num, den, width, f) as Val;
    expect(q.shape).to.deep.equal([rows, width]);
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < width; c++) {
        const exact = num.data[r * width + c] / den.data[r];
        expect(Math.abs(q.data[r * width + c] - exact)).to.be.at.most(f.errorBound * Math.abs(exact) + 1e-12, `row ${r} col ${c}`);
      }
    }
    expect(q.level).to.equal(1 + k);
  });

  it('k levels fewer than Newton followed by the product with the numerator', () => {
    const he = floatOps();
    const y = lowerReciprocal(he, den, f) as Val;
    const newton = y.level + 1; // then num[r][c] * y[r]
    const q = lowerDivision(he, num, den, width, f) as Val;
    expect(k).to.be.above(5);
    expect(newton - q.level).to.equal(k);
  });
});
