import { FlatAdam } from '../horizontal/weights.js';

/**
 * The split polynomial network. Bottom: one linear map per party, Z = sum_p X_p W_p + b (the
 * bias lives at the label holder). Top, at the label holder: the trainable quad
 * A = c0 + c1 Z + c2 Z^2 (hepoly's quad, per layer) and a dense classifier logits = A V + c.
 * Put together it is exactly hepoly's MLP with hidden [h] and a quad activation, whose first
 * kernel's rows are the parties' bottom maps stacked (assembleMlp).
 */
export class TopModel {
  readonly params: Float64Array;
  private readonly adam: FlatAdam;

  constructor(
    readonly features: number,
    readonly hidden: number,
    readonly classes: number,
    init: { wl: ArrayLike<number>; b: ArrayLike<number>; coeffs: ArrayLike<number>; v: ArrayLike<number>; c: ArrayLike<number> },
  ) {
    const F = features;
    const h = hidden;
    this.params = new Float64Array(F * h + h + 3 + h * classes + classes);
    this.params.set(Array.from(init.wl), 0);
    this.params.set(Array.from(init.b), F * h);
    this.params.set(Array.from(init.coeffs), F * h + h);
    this.params.set(Array.from(init.v), F * h + h + 3);
    this.params.set(Array.from(init.c), F * h + h + 3 + h * classes);
    this.adam = new FlatAdam(this.params.length);
  }

  private get offsets() {
    const F = this.features;
    const h = this.hidden;
    return { wl: 0, b: F * h, coeffs: F * h + h, v: F * h + h + 3, c: F * h + h + 3 + h * this.classes };
  }

  /** Z = X_L W_L + b + S (S: the banks' summed bottom outputs), then the quad and the logits. */
  forward(xl: Float32Array | Float64Array, s: Float64Array, rows: number): { z: Float64Array; a: Float64Array; logits: Float64Array } {
    const { features: F, hidden: h, classes: C, params: p } = this;
    const o = this.offsets;
    const z = new Float64Array(rows * h);
    const a = new Float64Array(rows * h);
    const logits = new Float64Array(rows * C);
    const [c0, c1, c2] = [p[o.coeffs], p[o.coeffs + 1], p[o.coeffs + 2]];
    for (let r = 0; r < rows; r++) {
      for (let j = 0; j < h; j++) {
        let v = p[o.b + j] + s[r * h + j];
        for (let f = 0; f < F; f++) v += xl[r * F + f] * p[o.wl + f * h + j];
        z[r * h + j] = v;
        a[r * h + j] = c0 + c1 * v + c2 * v * v;
      }
      for (let k = 0; k < C; k++) {
        let v = p[o.c + k];
        for (let j = 0; j < h; j++) v += a[r * h + j] * p[o.v + j * C + k];
        logits[r * C + k] = v;
      }
    }
    return { z, a, logits };
  }

  /**
   * One step on a batch: Adam on the label holder's parameters and, returned, each row's
   * gradient at the cut g_r = dloss_r / dZ_r (the batch mean's gradient is g / rows).
   */
  step(xl: Float32Array | Float64Array, s: Float64Array, y: ArrayLike<number>, rows: number, lr: number): { loss: number; cut: Float64Array } {
    const { features: F, hidden: h, classes: C, params: p } = this;
    const o = this.offsets;
    const { z, a, logits } = this.forward(xl, s, rows);
    const grad = new Float64Array(p.length);
    const cut = new Float64Array(rows * h);
    let loss = 0;
    for (let r = 0; r < rows; r++) {
      let max = -Infinity;
      for (let k = 0; k < C; k++) max = Math.max(max, logits[r * C + k]);
      let zsum = 0;
      for (let k = 0; k < C; k++) zsum += Math.exp(logits[r * C + k] - max);
      loss += Math.log(zsum) + max - logits[r * C + y[r]];
      const dl = new Float64Array(C);
      for (let k = 0; k < C; k++) dl[k] = Math.exp(logits[r * C + k] - max) / zsum - (k === y[r] ? 1 : 0);
      for (let k = 0; k < C; k++) grad[o.c + k] += dl[k] / rows;
      for (let j = 0; j < h; j++) {
        let da = 0;
        for (let k = 0; k < C; k++) {
          grad[o.v + j * C + k] += (a[r * h + j] * dl[k]) / rows;
          da += p[o.v + j * C + k] * dl[k];
        }
        const zz = z[r * h + j];
        grad[o.coeffs] += da / rows;
        grad[o.coeffs + 1] += (da * zz) / rows;
        grad[o.coeffs + 2] += (da * zz * zz) / rows;
        const dz = da * (p[o.coeffs + 1] + 2 * p[o.coeffs + 2] * zz);
        cut[r * h + j] = dz;
        grad[o.b + j] += dz / rows;
        for (let f = 0; f < F; f++) grad[o.wl + f * h + j] += (xl[r * F + f] * dz) / rows;
      }
    }
    this.adam.step(p, grad, lr);
    return { loss: loss / rows, cut };
  }

  part(name: 'wl' | 'b' | 'coeffs' | 'v' | 'c'): Float64Array {
    const o = this.offsets;
    const len = { wl: this.features * this.hidden, b: this.hidden, coeffs: 3, v: this.hidden * this.classes, c: this.classes }[name];
    return this.params.slice(o[name], o[name] + len);
  }
}

/** A bank's bottom map W_b (features x hidden) and its optimizer. */
export class BottomModel {
  private readonly adam: FlatAdam;
  constructor(
    readonly features: number,
    readonly hidden: number,
    readonly w: Float64Array,
  ) {
    this.adam = new FlatAdam(w.length);
  }

  /** E = X W_b for the given rows of x (row-major, `features` wide). */
  embed(x: Float64Array, rows: number): Float64Array {
    const { features: F, hidden: h } = this;
    const e = new Float64Array(rows * h);
    for (let r = 0; r < rows; r++) for (let f = 0; f < F; f++) {
      const xv = x[r * F + f];
      if (xv === 0) continue;
      for (let j = 0; j < h; j++) e[r * h + j] += xv * this.w[f * h + j];
    }
    return e;
  }

  apply(grad: Float64Array, lr: number): void {
    this.adam.step(this.w, grad, lr);
  }
}

/** Scales each row of a row-major matrix to L2 norm at most `clip`, in place. */
export function clipRows(m: Float64Array, rows: number, width: number, clip: number): void {
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let j = 0; j < width; j++) s += m[r * width + j] ** 2;
    const n = Math.sqrt(s);
    if (n > clip) for (let j = 0; j < width; j++) m[r * width + j] *= clip / n;
  }
}
