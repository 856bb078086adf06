/**
 * Element-wise polynomials pending on a tensor while the importer walks an ONNX graph: every
 * Mul/Add/Sub/Div/Pow by constants, or between two uses of the same tensor, multiplies or adds
 * these instead of making a layer. Only when something else reads the tensor does the
 * polynomial become hepoly layers (an activation, a batchnorm, or weights folded into the
 * dense/conv before it), so `a*x*x + b*x + c` written as five ONNX nodes is one quad: one level.
 *
 * A coefficient is a scalar (length 1) or one value per channel (length C, hepoly channel order);
 * `coeffs[k]` multiplies x^k.
 */
export interface Poly {
  coeffs: Float64Array[];
  /** the ONNX nodes that built it, for the report */
  sources: string[];
}

export const MAX_DEGREE = 8;

export function identityPoly(): Poly {
  return { coeffs: [Float64Array.of(0), Float64Array.of(1)], sources: [] };
}

export function constantPoly(c: Float64Array): Poly {
  return { coeffs: [c], sources: [] };
}

function broadcast(a: Float64Array, b: Float64Array, f: (x: number, y: number) => number): Float64Array {
  if (a.length !== b.length && a.length !== 1 && b.length !== 1) throw new Error(`per-channel coefficients of lengths ${a.length} and ${b.length} do not match`);
  const n = Math.max(a.length, b.length);
  return Float64Array.from({ length: n }, (_, i) => f(a[a.length === 1 ? 0 : i], b[b.length === 1 ? 0 : i]));
}

const sources = (p: Poly, q: Poly) => [...new Set([...p.sources, ...q.sources])];

export function addPoly(p: Poly, q: Poly): Poly {
  const d = Math.max(p.coeffs.length, q.coeffs.length);
  const zero = Float64Array.of(0);
  const coeffs = Array.from({ length: d }, (_, k) => broadcast(p.coeffs[k] ?? zero, q.coeffs[k] ?? zero, (x, y) => x + y));
  return trim({ coeffs, sources: sources(p, q) });
}

export function mulPoly(p: Poly, q: Poly): Poly {
  const coeffs: Float64Array[] = [];
  for (let i = 0; i < p.coeffs.length; i++) {
    for (let j = 0; j < q.coeffs.length; j++) {
      const term = broadcast(p.coeffs[i], q.coeffs[j], (x, y) => x * y);
      coeffs[i + j] = coeffs[i + j] ? broadcast(coeffs[i + j], term, (x, y) => x + y) : term;
    }
  }
  return trim({ coeffs, sources: sources(p, q) });
}

export function powPoly(p: Poly, e: number): Poly {
  let r: Poly = { coeffs: [Float64Array.of(1)], sources: p.sources };
  for (let i = 0; i < e; i++) r = mulPoly(r, p);
  return r;
}

export function scalePoly(p: Poly, s: number): Poly {
  return mulPoly(p, constantPoly(Float64Array.of(s)));
}

/** Drops top coefficients that are exactly zero (x*x - x*x is degree 0, not 2). */
function trim(p: Poly): Poly {
  const c = [...p.coeffs];
  while (c.length > 1 && c[c.length - 1].every((v) => v === 0)) c.pop();
  return { coeffs: c, sources: p.sources };
}

export const degree = (p: Poly): number => p.coeffs.length - 1;

export function isIdentity(p: Poly): boolean {
  return p.coeffs.length === 2 && p.coeffs[0].every((v) => v === 0) && p.coeffs[1].every((v) => v === 1);
}

export const isScalar = (p: Poly): boolean => p.coeffs.every((c) => c.length === 1);

/**
 * Splits p(x) = shift + scale * q(x) with q scalar-coefficient, q(0) = 0 and leading
 * coefficient 1, so a per-channel polynomial becomes an activation q and a batchnorm (scale,
 * shift). Returns null when the channels' polynomials are not multiples of one q.
 */
export function factorPerChannel(p: Poly, channels: number): { q: number[]; scale: Float64Array; shift: Float64Array } | null {
  const d = degree(p);
  const at = (c: Float64Array, i: number) => c[c.length === 1 ? 0 : i];
  const top = p.coeffs[d];
  const scale = Float64Array.from({ length: channels }, (_, i) => at(top, i));
  if (scale.some((s) => s === 0)) return null;
  const q = [0];
  for (let k = 1; k <= d; k++) {
    const ratios = Array.from({ length: channels }, (_, i) => at(p.coeffs[k], i) / scale[i]);
    const r = ratios[0];
    if (ratios.some((v) => Math.abs(v - r) > 1e-6 * Math.max(1, Math.abs(r)))) return null;
    q.push(r);
  }
  const shift = Float64Array.from({ length: channels }, (_, i) => at(p.coeffs[0], i));
  return { q, scale, shift };
}
