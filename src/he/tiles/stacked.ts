import type { HeProgram, LinearTerm, Step, StructOp, TensorInfo, WeightedOp } from '../program.js';
import { HepolyError } from '../../util/errors.js';

/**
 * Stacked packing, the tile point between batch and sample packing: m samples share every
 * ciphertext. Rather than a third evaluator, the program is rewritten to evaluate m samples
 * at once and handed to the sample-packing evaluator unchanged: images stack the samples in
 * the channel dimension ([H, W, C] -> [H, W, m*C], block-diagonal convolution kernels), so
 * pooling, padding and the plane layouts carry over; vectors stack them in blocks
 * ([n] -> [m*n], block-diagonal dense kernels). Rotations are shared by the m samples, so one
 * pass costs about what a single sample costs while it serves m.
 */

/** Where element e of sample s sits in the stacked tensor: ((e div inner)*m + s)*stride + e mod inner. */
interface StackMap {
  inner: number;
  stride: number;
  outer: number;
}

/**
 * `block`: each sample's vector in its own block of slots (images: samples stacked in the
 * channel dimension). `interleave`: samples innermost, element e of sample s at e*m + s, the
 * tile [slots/m, m] over [features, samples] (images: each pixel of a channel plane holds a run
 * of m samples). Interleaving needs no rewrite: the program keeps one sample's kernels and is
 * marked `interleave: m`, and the sample planner lays every tensor out with runs of m (see
 * layout.ts). With m = slots a vector program gets batch packing's layout (a ciphertext per
 * feature, samples across the slots), with m = 1 sample packing's, and between the two every
 * diagonal is filled by all m samples, so a pass costs the plaintext products of about one
 * sample however many it holds.
 */
export type StackOrder = 'block' | 'interleave';

export interface StackedProgram {
  program: HeProgram;
  samples: number;
  order: StackOrder;
  /** the original program (its input/output shapes are per sample) */
  base: HeProgram;
  maps: StackMap[];
}

function stackedIndex(mp: StackMap, m: number, s: number, e: number): number {
  return (Math.floor(e / mp.inner) * m + s) * mp.stride + (e % mp.inner);
}

function stackedSize(mp: StackMap, m: number): number {
  return mp.outer * m * mp.stride;
}

function sizeOf(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function canonical(shape: number[], order: StackOrder = 'block'): StackMap {
  const n = sizeOf(shape);
  if (order === 'interleave') return { inner: 1, stride: 1, outer: n };
  const inner = shape.length === 3 ? shape[2] : n;
  return { inner, stride: inner, outer: n / inner };
}

function stackedShape(shape: number[], mp: StackMap, m: number): number[] {
  return shape.length === 3 ? [shape[0], shape[1], m * shape[2]] : [stackedSize(mp, m)];
}

/** `blockSlots`: the slots each sample's input vector occupies (a vector input is padded to it). */
export function stackProgram(p: HeProgram, m: number, blockSlots?: number, order: StackOrder = 'block'): StackedProgram {
  if (!(Number.isInteger(m) && m >= 1)) throw new HepolyError(`stacked packing: samples per ciphertext must be a positive integer, found ${m}`);
  if ((p.refreshes ?? []).length) throw new HepolyError(`${order === 'interleave' ? 'interleaved' : 'stacked'} packing does not support --refresh client (refreshes run one sample per round trip); use --packing sample`);
  if (order === 'interleave') return interleaveProgram(p, m);
  const maps: StackMap[] = new Array(p.tensors.length);
  const inMap = canonical(p.inputShape);
  if (p.inputShape.length !== 3 && blockSlots) {
    if (blockSlots < inMap.inner) throw new HepolyError(`stacked packing: ${m} samples of ${inMap.inner} features do not fit the slots`);
    inMap.stride = blockSlots;
  }
  maps[p.input] = inMap;
  const steps: Step[] = p.steps.map((s) => {
    if (s.kind === 'power') {
      maps[s.out] = maps[s.a];
      return s;
    }
    if (s.kind === 'struct') {
      const src = maps[s.src];
      const outShape = p.tensors[s.out].shape;
      maps[s.out] = s.op.kind === 'flatten' ? { ...src, outer: src.outer } : canonical(outShape);
      if (s.op.kind !== 'flatten' && p.tensors[s.src].shape.length === 3 && src.stride !== src.inner) throw new Error('internal: padded image map');
      return { ...s, op: stackStruct(s.op), bias: stackVec(s.bias, maps[s.out], m) };
    }
    const outShape = p.tensors[s.out].shape;
    const allScale = s.terms.every((t) => t.op.kind === 'scale');
    const outMap = allScale && s.terms.every((t) => sameMap(maps[t.src], maps[s.terms[0].src])) ? maps[s.terms[0].src] : canonical(outShape);
    maps[s.out] = outMap;
    const terms: LinearTerm[] = s.terms.map((t) => ({ src: t.src, op: stackOp(t.op, p.tensors[t.src].shape, maps[t.src], outMap, m) }));
    return { ...s, terms, bias: stackVec(s.bias, outMap, m) };
  });
  const tensors: TensorInfo[] = p.tensors.map((t) => ({ ...t, shape: stackedShape(t.shape, maps[t.id], m), label: `${t.label} x${m}` }));
  const program: HeProgram = {
    ...p,
    inputShape: tensors[p.input].shape,
    classes: p.classes * m,
    tensors,
    steps,
  };
  return { program, samples: m, order: 'block', base: p, maps };
}

function interleaveProgram(p: HeProgram, m: number): StackedProgram {
  if (p.interleave && p.interleave > 1) throw new Error('internal: an interleaved program interleaved again');
  const tensors: TensorInfo[] = p.tensors.map((t) => ({ ...t, label: `${t.label} x${m} interleaved` }));
  const maps = p.tensors.map((t) => canonical(t.shape, 'interleave'));
  return { program: { ...p, tensors, interleave: m }, samples: m, order: 'interleave', base: p, maps };
}

/**
 * `m` samples per pass on a ring of `slots` slots: block-stacked vectors get slots/m slots per
 * sample (images stack in the channel dimension, interleaved vectors need no block size).
 */
export function stackForSlots(p: HeProgram, m: number, slots: number, order: StackOrder = 'block'): StackedProgram {
  return stackProgram(p, m, order === 'block' && p.inputShape.length !== 3 ? slots / m : undefined, order);
}

function sameMap(a: StackMap, b: StackMap): boolean {
  return a.inner === b.inner && a.stride === b.stride && a.outer === b.outer;
}

function stackStruct(op: StructOp): StructOp {
  return op;
}

function stackVec(v: Float64Array | null, mp: StackMap, m: number): Float64Array | null {
  if (!v) return null;
  const out = new Float64Array(stackedSize(mp, m));
  for (let s = 0; s < m; s++) for (let e = 0; e < v.length; e++) out[stackedIndex(mp, m, s, e)] = v[e];
  return out;
}

function stackOp(op: WeightedOp, inShape: number[], inMap: StackMap, outMap: StackMap, m: number): WeightedOp {
  if (op.kind === 'conv') {
    const g = op.geom;
    const { kernel: k, cin, cout } = g;
    const K = new Float64Array(k * k * cin * m * cout * m);
    for (let tap = 0; tap < k * k; tap++) {
      for (let s = 0; s < m; s++) {
        for (let ci = 0; ci < cin; ci++) {
          for (let co = 0; co < cout; co++) K[(tap * cin * m + s * cin + ci) * cout * m + s * cout + co] = op.kernel[(tap * cin + ci) * cout + co];
        }
      }
    }
    // block-diagonal: sample s's output channels read only sample s's input channels
    return { kind: 'conv', geom: { ...g, cin: cin * m, cout: cout * m, groups: (g.groups ?? 1) * m }, kernel: K };
  }
  if (op.kind === 'scale' && sameMap(inMap, outMap)) return { kind: 'scale', factors: stackVec(op.factors, outMap, m)! };
  if (op.kind === 'scale' && inShape.length === 3) throw new HepolyError('stacked packing: an image scaled into a different layout is not supported; use --packing sample');
  // dense, or a scale between two different vector maps: a block-diagonal matrix
  const inSize = stackedSize(inMap, m);
  const units = stackedSize(outMap, m);
  const kernel = new Float64Array(inSize * units);
  const n = sizeOf(inShape);
  for (let s = 0; s < m; s++) {
    if (op.kind === 'scale') {
      for (let e = 0; e < n; e++) kernel[stackedIndex(inMap, m, s, e) * units + stackedIndex(outMap, m, s, e)] = op.factors[e];
    } else {
      for (let i = 0; i < op.inSize; i++) {
        const row = stackedIndex(inMap, m, s, i) * units;
        for (let o = 0; o < op.units; o++) kernel[row + stackedIndex(outMap, m, s, o)] = op.kernel[i * op.units + o];
      }
    }
  }
  return { kind: 'dense', inSize, units, kernel };
}

/** The stacked input of up to m samples (row-major, `per` values each); missing samples are zeros. */
export function stackInputs(sp: StackedProgram, x: ArrayLike<number>, per: number, count: number): Float64Array {
  const mp = sp.maps[sp.base.input];
  const out = new Float64Array(stackedSize(mp, sp.samples));
  for (let s = 0; s < count; s++) for (let e = 0; e < per; e++) out[stackedIndex(mp, sp.samples, s, e)] = x[s * per + e];
  return out;
}

/** Per-sample outputs (count x classes) from the stacked output tensor. */
export function unstackOutputs(sp: StackedProgram, y: ArrayLike<number>, count: number): Float64Array {
  const classes = sp.base.classes;
  const out = new Float64Array(count * classes);
  for (let s = 0; s < count; s++) out.set(unstackTensor(sp, sp.base.output, y, s), s * classes);
  return out;
}

/** Sample s's values of any tensor of the base program, from the stacked tensor's values. */
export function unstackTensor(sp: StackedProgram, tensor: number, y: ArrayLike<number>, s: number): Float64Array {
  const mp = sp.maps[tensor];
  const n = sp.base.tensors[tensor].shape.reduce((a, b) => a * b, 1);
  const out = new Float64Array(n);
  for (let e = 0; e < n; e++) out[e] = y[stackedIndex(mp, sp.samples, s, e)];
  return out;
}
