import type { StructOp, WeightedOp } from './program.js';
import { structOutShape } from './program.js';
import { conv2d, dense, globalSum, pad, size, sumpool } from './tensor-ops.js';

/**
 * The compiler's values: affine expressions `sum_t chain_t(src_t) + bias` over tensors of
 * ciphertexts, and the algebra the lowering needs on them (scaling, struct ops, sums, and
 * folding element-wise factors into a weighted op's kernel). Pure functions, no program state.
 */

export type ChainOp = { kind: 'struct'; op: StructOp; node: string } | { kind: 'weighted'; op: WeightedOp; node: string };

export interface Term {
  src: number;
  ops: ChainOp[];
  /** pending element-wise factor at the end of the chain, not yet folded into a kernel */
  tail: Float64Array | null;
  shape: number[];
}

export interface Expr {
  shape: number[];
  terms: Term[];
  bias: Float64Array;
  /** graph nodes folded into this expression since its sources were materialized */
  nodes: string[];
}

/** Element-wise sum of same-shaped expressions (residual adds): their terms side by side. */
export function sumExprs(xs: Expr[], node: string): Expr {
  const out: Expr = { shape: xs[0].shape, terms: [], bias: new Float64Array(size(xs[0].shape)), nodes: [node] };
  for (const e of xs) {
    out.terms.push(...e.terms.map(copyTerm));
    for (let i = 0; i < out.bias.length; i++) out.bias[i] += e.bias[i];
    out.nodes.push(...e.nodes);
  }
  return out;
}

export function identity(src: number, shape: number[]): Expr {
  return { shape, terms: [{ src, ops: [], tail: null, shape }], bias: new Float64Array(size(shape)), nodes: [] };
}

export function affineOf(pairs: [number, number][], constant: number, shape: number[], node: string): Expr {
  const n = size(shape);
  return {
    shape,
    terms: pairs.map(([src, f]) => ({ src, ops: [], tail: new Float64Array(n).fill(f), shape })),
    bias: new Float64Array(n).fill(constant),
    nodes: [node],
  };
}

export function copyTerm(t: Term): Term {
  return { src: t.src, ops: [...t.ops], tail: t.tail ? Float64Array.from(t.tail) : null, shape: t.shape };
}

export function isOnes(t: Float64Array | null): boolean {
  return !t || t.every((v) => v === 1);
}

export function tile(perChannel: Float64Array, n: number): Float64Array {
  const C = perChannel.length;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = perChannel[i % C];
  return out;
}

export function isChannelwise(t: Float64Array, C: number): boolean {
  for (let i = C; i < t.length; i++) if (t[i] !== t[i % C]) return false;
  return true;
}

export function scaleExpr(x: Expr, s: Float64Array, node: string): Expr {
  return {
    shape: x.shape,
    terms: x.terms.map((t) => {
      const c = copyTerm(t);
      c.tail = c.tail ? c.tail.map((v, i) => v * s[i]) : Float64Array.from(s);
      return c;
    }),
    bias: x.bias.map((v, i) => v * s[i]),
    nodes: [...x.nodes, node],
  };
}

export function structExpr(x: Expr, op: StructOp, node: string): Expr {
  const outShape = structOutShape(op, x.shape);
  const n = size(outShape);
  const C = x.shape[x.shape.length - 1];
  return {
    shape: outShape,
    terms: x.terms.map((t) => {
      const moved = op.kind === 'gather' ? gatherBeforeTokens(t, op, outShape, node) : null;
      if (moved) return moved;
      const c = copyTerm(t);
      if (c.tail && !isOnes(c.tail)) {
        if (op.kind === 'flatten') {
          // same element order: the factor moves along unchanged
        } else if (op.kind === 'gather') {
          c.tail = gatherValues(c.tail, op.index);
        } else if (isChannelwise(c.tail, C)) {
          c.tail = tile(c.tail.subarray(0, C), n);
        } else {
          c.ops.push({ kind: 'weighted', op: { kind: 'scale', factors: c.tail }, node });
          c.tail = null;
        }
      } else c.tail = null;
      c.ops.push({ kind: 'struct', op, node });
      c.shape = outShape;
      return c;
    }),
    bias: applyStruct(op, x.bias, x.shape),
    nodes: [...x.nodes, node],
  };
}

/**
 * A gather of whole rows after a per-token kernel (a language model's last token) commutes
 * with it: the rows are gathered from the kernel's input and the kernel runs on them alone,
 * so the selection costs nothing and the skipped rows are never computed.
 */
function gatherBeforeTokens(t: Term, op: Extract<StructOp, { kind: 'gather' }>, outShape: number[], node: string): Term | null {
  const w = t.ops.findIndex((o) => o.kind === 'weighted');
  const last = t.ops[t.ops.length - 1];
  if (w !== t.ops.length - 1 || !last || last.kind !== 'weighted' || last.op.kind !== 'tokens') return null;
  const k = last.op;
  const rows = wholeRows(op.index, k.units);
  if (!rows) return null;
  const index = new Int32Array(rows.length * k.inSize);
  rows.forEach((r, i) => {
    for (let j = 0; j < k.inSize; j++) index[i * k.inSize + j] = r * k.inSize + j;
  });
  const c = copyTerm(t);
  c.ops.splice(w, 1, { kind: 'struct', op: { kind: 'gather', shape: [rows.length, k.inSize], index }, node }, { kind: 'weighted', op: { ...k, tokens: rows.length }, node: last.node });
  if (c.tail) c.tail = gatherValues(c.tail, op.index);
  c.shape = outShape;
  return c;
}

/** The rows an index reads when it copies whole rows of `width` elements in order, else null. */
function wholeRows(index: Int32Array, width: number): number[] | null {
  if (index.length % width !== 0) return null;
  const rows: number[] = [];
  for (let r = 0; r < index.length / width; r++) {
    const row = Math.floor(index[r * width] / width);
    for (let j = 0; j < width; j++) if (index[r * width + j] !== row * width + j) return null;
    rows.push(row);
  }
  return rows;
}

export function applyStruct(op: StructOp, x: Float64Array, shape: number[]): Float64Array {
  switch (op.kind) {
    case 'sumpool':
      return sumpool(x, shape, op.size, op.stride);
    case 'globalsum':
      return globalSum(x, shape);
    case 'pad':
      return pad(x, shape, op);
    case 'flatten':
      return Float64Array.from(x);
    case 'gather':
      return gatherValues(x, op.index);
    case 'rotate':
      throw new Error('internal: rotations exist only in token-folded programs, which are never evaluated on plain values');
  }
}

/** out[i] = x[index[i]] (a relabeling: patches, one token row). */
export function gatherValues(x: Float64Array, index: Int32Array): Float64Array {
  const out = new Float64Array(index.length);
  for (let i = 0; i < index.length; i++) out[i] = x[index[i]];
  return out;
}

/** The same dense layer on every row of [tokens, inSize]. */
export function tokenwise(x: Float64Array, op: Extract<WeightedOp, { kind: 'tokens' }>): Float64Array {
  const out = new Float64Array(op.tokens * op.units);
  for (let t = 0; t < op.tokens; t++) out.set(dense(x.subarray(t * op.inSize, (t + 1) * op.inSize), op.kernel, op.units), t * op.units);
  return out;
}

/** Whether element-wise factors over [tokens, width] repeat on every token (so they fold into a shared kernel). */
function sameOnEveryToken(t: Float64Array, width: number): boolean {
  for (let i = width; i < t.length; i++) if (t[i] !== t[i % width]) return false;
  return true;
}

export function applyWeighted(op: WeightedOp, x: Float64Array, shape: number[]): Float64Array {
  switch (op.kind) {
    case 'dense':
      return dense(x, op.kernel, op.units);
    case 'conv':
      return conv2d(x, op.geom, op.kernel);
    case 'scale':
      return x.map((v, i) => v * op.factors[i]);
    case 'tokens':
      return tokenwise(x, op);
  }
  void shape;
}

/** Folds element-wise factors on a weighted op's input into its kernel, when the op allows. */
export function foldInputFactors(op: WeightedOp, t: Float64Array): WeightedOp | null {
  if (op.kind === 'dense') {
    const k = Float64Array.from(op.kernel);
    for (let i = 0; i < op.inSize; i++) for (let j = 0; j < op.units; j++) k[i * op.units + j] *= t[i];
    return { ...op, kernel: k };
  }
  if (op.kind === 'conv') {
    const { cin, cout, kernel } = op.geom;
    if (!isChannelwise(t, cin)) return null;
    const k = Float64Array.from(op.kernel);
    for (let p = 0; p < kernel * kernel; p++) for (let ci = 0; ci < cin; ci++) for (let co = 0; co < cout; co++) k[(p * cin + ci) * cout + co] *= t[ci];
    return { ...op, kernel: k };
  }
  if (op.kind === 'tokens') {
    if (!sameOnEveryToken(t, op.inSize)) return null;
    const k = Float64Array.from(op.kernel);
    for (let i = 0; i < op.inSize; i++) for (let j = 0; j < op.units; j++) k[i * op.units + j] *= t[i];
    return { ...op, kernel: k };
  }
  return { kind: 'scale', factors: op.factors.map((v, i) => v * t[i]) };
}

/** Folds element-wise factors on a weighted op's output into its kernel, when the op allows. */
export function foldOutputFactors(op: WeightedOp, t: Float64Array): WeightedOp | null {
  if (op.kind === 'dense') {
    const k = Float64Array.from(op.kernel);
    for (let i = 0; i < op.inSize; i++) for (let j = 0; j < op.units; j++) k[i * op.units + j] *= t[j];
    return { ...op, kernel: k };
  }
  if (op.kind === 'conv') {
    const { cout } = op.geom;
    if (!isChannelwise(t, cout)) return null;
    const k = Float64Array.from(op.kernel);
    for (let i = 0; i < k.length; i++) k[i] *= t[i % cout];
    return { ...op, kernel: k };
  }
  if (op.kind === 'tokens') {
    if (!sameOnEveryToken(t, op.units)) return null;
    const k = Float64Array.from(op.kernel);
    for (let i = 0; i < k.length; i++) k[i] *= t[i % op.units];
    return { ...op, kernel: k };
  }
  return { kind: 'scale', factors: op.factors.map((v, i) => v * t[i]) };
}

/** Moves a factor on the end of a chain back before its struct ops, if it commutes with them. */
export function tailBeforePost(tail: Float64Array, post: StructOp[], weightedOut: number[]): Float64Array | null {
  if (!post.length) return tail;
  const shapes: number[][] = [weightedOut];
  for (const p of post) shapes.push(structOutShape(p, shapes[shapes.length - 1]));
  let t = tail;
  for (let k = post.length - 1; k >= 0; k--) {
    const inShape = shapes[k];
    if (post[k].kind === 'flatten') continue;
    // a gather moves elements between channels: the factor does not commute with it
    if (post[k].kind === 'gather') return null;
    const C = inShape[inShape.length - 1];
    if (!isChannelwise(t, C)) return null;
    t = tile(t.subarray(0, C), size(inShape));
  }
  return t;
}
