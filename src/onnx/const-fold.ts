import { numel, type ConstTensor } from './tensor.js';

/**
 * Constant folding for the shape arithmetic exporters emit around a Reshape
 * (`x.view(x.size(0), -1)` becomes Shape -> Gather -> Unsqueeze -> Concat -> Reshape) and for
 * arithmetic between initializers. The batch size is unknown at import time; `Shape` writes
 * BATCH in its place and `Reshape` reads it back as "keep the batch axis".
 */
export const BATCH = -0x7fff_ffff;

function strides(dims: number[]): number[] {
  const s = new Array<number>(dims.length).fill(1);
  for (let i = dims.length - 2; i >= 0; i--) s[i] = s[i + 1] * dims[i + 1];
  return s;
}

/** numpy broadcasting of an element-wise binary function. */
export function broadcastBinary(a: ConstTensor, b: ConstTensor, f: (x: number, y: number) => number): ConstTensor {
  const rank = Math.max(a.dims.length, b.dims.length);
  const pad = (d: number[]) => [...new Array<number>(rank - d.length).fill(1), ...d];
  const da = pad(a.dims);
  const db = pad(b.dims);
  const dims = da.map((x, i) => {
    if (x !== db[i] && x !== 1 && db[i] !== 1) throw new Error(`shapes [${a.dims.join(', ')}] and [${b.dims.join(', ')}] do not broadcast`);
    return Math.max(x, db[i]);
  });
  const so = strides(dims);
  const sa = strides(da);
  const sb = strides(db);
  const data = new Float64Array(numel(dims));
  for (let i = 0; i < data.length; i++) {
    let ia = 0;
    let ib = 0;
    for (let k = 0; k < rank; k++) {
      const idx = Math.floor(i / so[k]) % dims[k];
      if (da[k] !== 1) ia += idx * sa[k];
      if (db[k] !== 1) ib += idx * sb[k];
    }
    data[i] = f(a.data[ia], b.data[ib]);
  }
  return { dims, data };
}

export const BINARY: Record<string, (x: number, y: number) => number> = {
  Add: (x, y) => x + y,
  Sub: (x, y) => x - y,
  Mul: (x, y) => x * y,
  Div: (x, y) => x / y,
  Pow: (x, y) => x ** y,
};

/** Gather along `axis` with constant indices. */
export function gather(data: ConstTensor, indices: ConstTensor, axis: number): ConstTensor {
  const ax = axis < 0 ? axis + data.dims.length : axis;
  const outer = numel(data.dims.slice(0, ax));
  const inner = numel(data.dims.slice(ax + 1));
  const n = data.dims[ax];
  const idx = Array.from(indices.data, (i) => (i < 0 ? i + n : i));
  const out = new Float64Array(outer * idx.length * inner);
  let o = 0;
  for (let a = 0; a < outer; a++) for (const i of idx) for (let b = 0; b < inner; b++) out[o++] = data.data[(a * n + i) * inner + b];
  return { dims: [...data.dims.slice(0, ax), ...indices.dims, ...data.dims.slice(ax + 1)], data: out };
}

export function unsqueeze(t: ConstTensor, axes: number[]): ConstTensor {
  const rank = t.dims.length + axes.length;
  const norm = new Set(axes.map((a) => (a < 0 ? a + rank : a)));
  const dims: number[] = [];
  let j = 0;
  for (let i = 0; i < rank; i++) dims.push(norm.has(i) ? 1 : t.dims[j++]);
  return { dims, data: t.data };
}

export function squeeze(t: ConstTensor, axes: number[] | undefined): ConstTensor {
  const norm = axes?.map((a) => (a < 0 ? a + t.dims.length : a));
  return { dims: t.dims.filter((d, i) => (norm ? !norm.includes(i) : d !== 1)), data: t.data };
}

/** Concat of constants along `axis` (rank-1 shape vectors in practice). */
export function concat(ts: ConstTensor[], axis: number): ConstTensor {
  const rank = ts[0].dims.length;
  const ax = axis < 0 ? axis + rank : axis;
  const outer = numel(ts[0].dims.slice(0, ax));
  const parts = ts.map((t) => ({ t, chunk: numel(t.dims.slice(ax)) }));
  const out: number[] = [];
  for (let a = 0; a < outer; a++) for (const { t, chunk } of parts) out.push(...t.data.subarray(a * chunk, (a + 1) * chunk));
  const dims = [...ts[0].dims];
  dims[ax] = ts.reduce((s, t) => s + t.dims[ax], 0);
  return { dims, data: Float64Array.from(out) };
}

export function transposeConst(t: ConstTensor, perm: number[]): ConstTensor {
  const dims = perm.map((p) => t.dims[p]);
  const si = strides(t.dims);
  const so = strides(dims);
  const data = new Float64Array(t.data.length);
  for (let i = 0; i < data.length; i++) {
    let src = 0;
    for (let k = 0; k < dims.length; k++) src += (Math.floor(i / so[k]) % dims[k]) * si[perm[k]];
    data[i] = t.data[src];
  }
  return { dims, data };
}

/** The per-sample ONNX dims a Reshape target resolves to, or null when it is not a per-sample reshape. */
export function reshapeTarget(v: { dims: number[] }, target: number[], batchFixed: boolean): number[] | null {
  const [first, ...rest] = target;
  const keepsBatch = first === BATCH || first === 0 || first === -1 || (batchFixed && first === 1);
  if (!keepsBatch) return null;
  const per = numel(v.dims);
  const dims = rest.map((d, i) => (d === 0 ? v.dims[i] : d === BATCH ? NaN : d));
  const known = dims.filter((d) => d !== -1).reduce((p, d) => p * d, 1);
  const out = dims.map((d) => (d === -1 ? per / known : d));
  return out.some((d) => !Number.isInteger(d) || d < 1) || numel(out) !== per ? null : out;
}

/** ONNX Slice of a constant (any rank, negative steps included: exporters reverse pad lists with step -1). */
export function sliceConst(t: ConstTensor, starts: number[], ends: number[], axes: number[] | undefined, steps: number[] | undefined): ConstTensor {
  const rank = t.dims.length;
  const picks = t.dims.map((d) => [...Array(d).keys()]);
  (axes ?? starts.map((_, i) => i)).forEach((axis, i) => {
    const ax = axis < 0 ? axis + rank : axis;
    const d = t.dims[ax];
    const step = steps?.[i] ?? 1;
    const norm = (v: number) => (v < 0 ? v + d : v);
    const idx: number[] = [];
    if (step > 0) {
      const s = Math.min(Math.max(norm(starts[i]), 0), d);
      const e = Math.min(Math.max(norm(ends[i]), 0), d);
      for (let k = s; k < e; k += step) idx.push(k);
    } else {
      const s = Math.min(Math.max(norm(starts[i]), 0), d - 1);
      const e = Math.min(Math.max(ends[i] < -d ? -1 : norm(ends[i]), -1), d - 1);
      for (let k = s; k > e; k += step) idx.push(k);
    }
    picks[ax] = idx;
  });
  const dims = picks.map((p) => p.length);
  const si = strides(t.dims);
  const so = strides(dims);
  const data = new Float64Array(numel(dims));
  for (let i = 0; i < data.length; i++) {
    let src = 0;
    for (let k = 0; k < rank; k++) src += picks[k][Math.floor(i / so[k]) % dims[k]] * si[k];
    data[i] = t.data[src];
  }
  return { dims, data };
}

/** Reshape of a constant: 0 copies the input size, -1 takes what is left. */
export function reshapeConst(t: ConstTensor, target: number[]): ConstTensor {
  const dims = target.map((d, i) => (d === 0 ? t.dims[i] : d));
  const known = dims.filter((d) => d !== -1).reduce((a, b) => a * b, 1);
  return { dims: dims.map((d) => (d === -1 ? t.data.length / known : d)), data: t.data };
}
