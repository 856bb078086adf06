/**
 * Encrypted logits against the plaintext model's: agreement, accuracy, error, and which
 * disagreements are plaintext near-ties (two top logits closer than the CKKS error, so the
 * noise, not the evaluator, decides them).
 */

export interface LogitComparison {
  agree: number;
  plainCorrect: number;
  heCorrect: number;
  maxAbsError: number;
  meanAbsError: number;
  /** max - min of the plaintext logits */
  logitRange: number;
  /** every disagreeing sample, with the plaintext gap between its two top logits */
  disagreements: { index: number; plaintextGap: number }[];
  /**
   * disagreements whose own logit error is no larger than that of the samples that agree:
   * the usual CKKS noise flipped a plaintext near-tie (a flip always needs an error of at least
   * half the top-2 gap, so the sample's error, not the gap, tells noise from a fault)
   */
  nearTies: number;
  /** max logit error over the samples that agree (the noise of a sound evaluation) */
  agreeingMaxError: number;
}

export function compareLogits(plain: ArrayLike<number>, he: ArrayLike<number>, labels: ArrayLike<number>, n: number, classes: number): LogitComparison {
  let agree = 0;
  let plainCorrect = 0;
  let heCorrect = 0;
  let maxErr = 0;
  let sumErr = 0;
  let lo = Infinity;
  let hi = -Infinity;
  const disagreements: { index: number; plaintextGap: number; error: number }[] = [];
  let agreeingMax = 0;
  for (let s = 0; s < n; s++) {
    const a = argmax(plain, s, classes);
    const b = argmax(he, s, classes);
    if (a === labels[s]) plainCorrect++;
    if (b === labels[s]) heCorrect++;
    let sampleErr = 0;
    for (let k = 0; k < classes; k++) {
      const v = plain[s * classes + k];
      const e = Math.abs(v - he[s * classes + k]);
      // NaN (a broken decryption) must not hide behind a comparison that is always false
      if (!(e <= sampleErr)) sampleErr = Number.isNaN(e) ? Infinity : e;
      sumErr += e;
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
    maxErr = Math.max(maxErr, sampleErr);
    if (a === b) {
      agree++;
      agreeingMax = Math.max(agreeingMax, sampleErr);
    } else disagreements.push({ index: s, plaintextGap: topTwoGap(plain, s, classes), error: sampleErr });
  }
  return {
    agree,
    plainCorrect,
    heCorrect,
    maxAbsError: maxErr,
    meanAbsError: sumErr / (n * classes),
    logitRange: hi - lo,
    disagreements: disagreements.map(({ index, plaintextGap }) => ({ index, plaintextGap })),
    nearTies: disagreements.filter((d) => d.error <= agreeingMax).length,
    agreeingMaxError: agreeingMax,
  };
}

export function argmax(v: ArrayLike<number>, s: number, classes: number): number {
  let best = 0;
  for (let k = 1; k < classes; k++) if (v[s * classes + k] > v[s * classes + best]) best = k;
  return best;
}

function topTwoGap(v: ArrayLike<number>, s: number, classes: number): number {
  let a = -Infinity;
  let b = -Infinity;
  for (let k = 0; k < classes; k++) {
    const x = v[s * classes + k];
    if (x > a) [b, a] = [a, x];
    else if (x > b) b = x;
  }
  return a - b;
}
