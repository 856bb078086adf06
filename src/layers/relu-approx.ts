/**
 * A fixed polynomial fit of ReLU on [lo, hi] by least squares on Chebyshev nodes (which
 * avoids Runge's oscillation at the ends of the range). Used to convert a ReLU network into
 * one that HE can evaluate: inside the range the error is small, outside it grows fast, which
 * is why range-aware training keeps activation inputs inside.
 */
export function fitReluPolynomial(degree: number, range: [number, number], samples = 512): Float64Array {
  const [lo, hi] = range;
  const xs: number[] = [];
  for (let k = 0; k < samples; k++) {
    const t = Math.cos((Math.PI * (k + 0.5)) / samples);
    xs.push(lo + ((t + 1) / 2) * (hi - lo));
  }
  // normal equations in the scaled variable u = x / s keep them well conditioned
  const s = Math.max(Math.abs(lo), Math.abs(hi));
  const n = degree + 1;
  const A = Array.from({ length: n }, () => new Float64Array(n));
  const b = new Float64Array(n);
  for (const x of xs) {
    const u = x / s;
    const pw = new Float64Array(n);
    pw[0] = 1;
    for (let i = 1; i < n; i++) pw[i] = pw[i - 1] * u;
    const y = Math.max(0, x);
    for (let i = 0; i < n; i++) {
      b[i] += pw[i] * y;
      for (let j = 0; j < n; j++) A[i][j] += pw[i] * pw[j];
    }
  }
  const c = solve(A, b);
  // back to the variable x: c_i u^i = (c_i / s^i) x^i
  for (let i = 0; i < n; i++) c[i] /= Math.pow(s, i);
  return c;
}

/** Gaussian elimination with partial pivoting. */
function solve(A: Float64Array[], b: Float64Array): Float64Array {
  const n = b.length;
  const M = A.map((row, i) => Float64Array.from([...row, b[i]]));
  for (let col = 0; col < n; col++) {
    let piv = col;
    for (let r = col + 1; r < n; r++) if (Math.abs(M[r][col]) > Math.abs(M[piv][col])) piv = r;
    [M[col], M[piv]] = [M[piv], M[col]];
    for (let r = col + 1; r < n; r++) {
      const f = M[r][col] / M[col][col];
      for (let k = col; k <= n; k++) M[r][k] -= f * M[col][k];
    }
  }
  const x = new Float64Array(n);
  for (let r = n - 1; r >= 0; r--) {
    let acc = M[r][n];
    for (let k = r + 1; k < n; k++) acc -= M[r][k] * x[k];
    x[r] = acc / M[r][r];
  }
  return x;
}
