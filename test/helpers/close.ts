import { AssertionError } from 'chai';

export interface CloseOptions {
  /** absolute tolerance (default 1e-5) */
  atol?: number;
  /** relative tolerance, scaled by |expected| (default 1e-5) */
  rtol?: number;
}

/**
 * Asserts |actual[i] - expected[i]| <= atol + rtol * |expected[i]| for every i
 * (NaN only matches NaN, +-Infinity only itself).  On failure throws a chai
 * AssertionError naming the worst offending index, both values, the
 * difference, and how many elements failed.
 */
export function expectAllClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  opts: CloseOptions = {},
  what = 'values',
): void {
  const atol = opts.atol ?? 1e-5;
  const rtol = opts.rtol ?? 1e-5;
  if (actual.length !== expected.length) {
    throw new AssertionError(`${what}: length ${actual.length} != expected length ${expected.length}`, {
      actual: actual.length,
      expected: expected.length,
    });
  }
  let worst = -1;
  let worstExcess = 0;
  let failures = 0;
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i];
    const e = expected[i];
    let excess: number;
    if (Number.isNaN(e) || Number.isNaN(a)) {
      excess = Number.isNaN(e) && Number.isNaN(a) ? 0 : Infinity;
    } else if (!Number.isFinite(e) || !Number.isFinite(a)) {
      excess = a === e ? 0 : Infinity;
    } else {
      // >1 means out of tolerance
      excess = Math.abs(a - e) / (atol + rtol * Math.abs(e));
    }
    if (excess > 1) {
      failures++;
      if (excess > worstExcess || worst < 0) {
        worst = i;
        worstExcess = excess;
      }
    }
  }
  if (failures > 0) {
    const a = actual[worst];
    const e = expected[worst];
    throw new AssertionError(
      `${what}: ${failures}/${expected.length} elements not close (atol ${atol}, rtol ${rtol}); ` +
        `worst at index ${worst}: actual ${a}, expected ${e}, |diff| ${Math.abs(a - e)}`,
      { actual: a, expected: e, showDiff: false },
    );
  }
}
