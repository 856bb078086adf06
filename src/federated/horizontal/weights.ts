import type { WeightMap } from '../../models/graph.js';

/** The model as one vector (weights in map order), the shape every aggregation works on. */
export function flatten(w: WeightMap): Float64Array {
  const total = [...w.values()].reduce((a, t) => a + t.data.length, 0);
  const out = new Float64Array(total);
  let off = 0;
  for (const t of w.values()) {
    out.set(t.data, off);
    off += t.data.length;
  }
  return out;
}

/** A vector back into a weight map shaped like `like`. */
export function unflatten(v: ArrayLike<number>, like: WeightMap): WeightMap {
  const out: WeightMap = new Map();
  let off = 0;
  for (const [k, t] of like) {
    const data = new Float32Array(t.data.length);
    for (let i = 0; i < data.length; i++) data[i] = v[off + i];
    off += data.length;
    out.set(k, { shape: t.shape.slice(), data });
  }
  return out;
}

/** Scales `v` in place so its L2 norm is at most `clip`; returns the norm before clipping. */
export function clipL2(v: Float64Array, clip: number): number {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i] * v[i];
  const norm = Math.sqrt(s);
  if (norm > clip) for (let i = 0; i < v.length; i++) v[i] *= clip / norm;
  return norm;
}

/** Adam (Kingma and Ba) on a flat vector: the server optimizer every party applies identically. */
export class FlatAdam {
  private m: Float64Array;
  private v: Float64Array;
  private t = 0;

  constructor(
    size: number,
    private readonly beta1 = 0.9,
    private readonly beta2 = 0.999,
    private readonly eps = 1e-7,
  ) {
    this.m = new Float64Array(size);
    this.v = new Float64Array(size);
  }

  /** params -= lr * mhat / (sqrt(vhat) + eps), in place. */
  step(params: Float64Array, grad: ArrayLike<number>, lr: number): void {
    this.t++;
    const c1 = 1 - this.beta1 ** this.t;
    const c2 = 1 - this.beta2 ** this.t;
    for (let i = 0; i < params.length; i++) {
      this.m[i] = this.beta1 * this.m[i] + (1 - this.beta1) * grad[i];
      this.v[i] = this.beta2 * this.v[i] + (1 - this.beta2) * grad[i] * grad[i];
      params[i] -= (lr * (this.m[i] / c1)) / (Math.sqrt(this.v[i] / c2) + this.eps);
    }
  }
}
