/**
 * Area under the precision-recall curve as average precision (scikit-learn's
 * average_precision_score): AP = sum over score thresholds of (R_k - R_{k-1}) * P_k, ties
 * taken as one threshold. The metric of choice for rare anomalies, where accuracy says little.
 */
export function averagePrecision(scores: ArrayLike<number>, positive: ArrayLike<boolean>): number {
  const idx = Array.from({ length: scores.length }, (_, i) => i).sort((a, b) => scores[b] - scores[a]);
  let totalPos = 0;
  for (let i = 0; i < positive.length; i++) if (positive[i]) totalPos++;
  if (!totalPos) return NaN;
  let tp = 0;
  let fp = 0;
  let ap = 0;
  let prevRecall = 0;
  for (let k = 0; k < idx.length; k++) {
    if (positive[idx[k]]) tp++;
    else fp++;
    const lastOfTie = k + 1 === idx.length || scores[idx[k + 1]] !== scores[idx[k]];
    if (!lastOfTie) continue;
    const recall = tp / totalPos;
    ap += (recall - prevRecall) * (tp / (tp + fp));
    prevRecall = recall;
  }
  return ap;
}

/** Softmax probability of class `cls` from row-major logits. */
export function classProbability(logits: ArrayLike<number>, classes: number, cls: number): Float64Array {
  const n = logits.length / classes;
  const out = new Float64Array(n);
  for (let r = 0; r < n; r++) {
    let max = -Infinity;
    for (let c = 0; c < classes; c++) max = Math.max(max, logits[r * classes + c]);
    let z = 0;
    for (let c = 0; c < classes; c++) z += Math.exp(logits[r * classes + c] - max);
    out[r] = Math.exp(logits[r * classes + cls] - max) / z;
  }
  return out;
}
