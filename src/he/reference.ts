import { type Graph, type WeightMap, INPUT, inferShapes, weightKey } from '../models/graph.js';
import type { HeProgram, StructOp } from './program.js';
import { applyWeighted } from './compile.js';
import { conv2d, convGeometry, dense, globalSum, pad, polynomial, size, sumpool } from './tensor-ops.js';

/**
 * Float64 references: the graph evaluated directly (every node's value, for per-layer range
 * checks) and the compiled HE program evaluated without encryption (every tensor's exact
 * value, what --trace compares decrypted layers against).
 */

/** Every node's output for one sample (inference mode). */
export function graphForward(graph: Graph, weights: WeightMap, x: Float64Array): Map<string, Float64Array> {
  const shapes = inferShapes(graph);
  const vals = new Map<string, Float64Array>([[INPUT, x]]);
  const w = (node: string, p: string) => weights.get(weightKey(node, p))!.data;
  for (const node of graph.nodes) {
    const ins = node.inputs.map((n) => vals.get(n)!);
    const inShape = shapes.get(node.inputs[0])!;
    const L = node.layer;
    let out: Float64Array;
    switch (L.op) {
      case 'dense':
        out = dense(ins[0], w(node.name, 'kernel'), L.units, L.bias ? w(node.name, 'bias') : undefined);
        break;
      case 'conv2d':
        out = conv2d(ins[0], convGeometry(inShape, L.kernel, L.stride, L.padding, L.filters), w(node.name, 'kernel'), L.bias ? w(node.name, 'bias') : undefined);
        break;
      case 'activation': {
        const a = L.activation;
        if (a.kind === 'relu') out = ins[0].map((v) => Math.max(0, v));
        else out = polynomial(ins[0], a.kind === 'square' ? [0, 0, 1] : w(node.name, 'coeffs'));
        break;
      }
      case 'avgpool': {
        const s = sumpool(ins[0], inShape, L.size, L.stride);
        out = s.map((v) => v / (L.size * L.size));
        break;
      }
      case 'maxpool':
        throw new Error('maxpool has no HE reference');
      case 'global_avgpool':
        out = globalSum(ins[0], inShape).map((v) => v / (inShape[0] * inShape[1]));
        break;
      case 'flatten':
        out = ins[0];
        break;
      case 'pad':
        out = pad(ins[0], inShape, L);
        break;
      case 'add':
        out = ins[0].map((v, i) => ins.reduce((acc, t) => acc + t[i], 0) + 0 * v);
        break;
      case 'batchnorm': {
        const g = w(node.name, 'gamma');
        const b = w(node.name, 'beta');
        const m = w(node.name, 'moving_mean');
        const vr = w(node.name, 'moving_variance');
        const C = g.length;
        out = ins[0].map((v, i) => {
          const c = i % C;
          return (g[c] * (v - m[c])) / Math.sqrt(vr[c] + L.epsilon) + b[c];
        });
        break;
      }
    }
    vals.set(node.name, out);
  }
  return vals;
}

/** Logits of `count` samples with the float64 graph interpreter. */
export function graphPredict(graph: Graph, weights: WeightMap, x: ArrayLike<number>, count: number): Float64Array {
  const per = size(graph.inputShape);
  const out = new Float64Array(count * graph.classes);
  for (let s = 0; s < count; s++) {
    const v = graphForward(graph, weights, Float64Array.from({ length: per }, (_, i) => x[s * per + i]));
    out.set(v.get(graph.output)!, s * graph.classes);
  }
  return out;
}

export function applyStructOp(op: StructOp, x: Float64Array, shape: number[]): Float64Array {
  switch (op.kind) {
    case 'sumpool':
      return sumpool(x, shape, op.size, op.stride);
    case 'globalsum':
      return globalSum(x, shape);
    case 'pad':
      return pad(x, shape, op);
    case 'flatten':
      return x;
  }
}

/** Every tensor of the compiled program for one sample, in exact arithmetic. */
export function programForward(p: HeProgram, x: Float64Array): Float64Array[] {
  const vals: Float64Array[] = [];
  vals[p.input] = x;
  const refreshAt = new Map((p.refreshes ?? []).map((r) => [r.before, r.tensors]));
  for (const [i, s] of p.steps.entries()) {
    // a client refresh re-encrypts the same values: exact arithmetic sees no change
    for (const { src, out } of refreshAt.get(i) ?? []) vals[out] = vals[src];
    if (s.kind === 'linear') {
      const out = new Float64Array(size(p.tensors[s.out].shape));
      for (const t of s.terms) {
        const y = applyWeighted(t.op, vals[t.src], p.tensors[t.src].shape);
        for (let i = 0; i < out.length; i++) out[i] += y[i];
      }
      if (s.bias) for (let i = 0; i < out.length; i++) out[i] += s.bias[i];
      vals[s.out] = out;
    } else if (s.kind === 'power') {
      const a = vals[s.a];
      const b = vals[s.b];
      vals[s.out] = a.map((v, i) => v * b[i]);
    } else {
      const y = applyStructOp(s.op, vals[s.src], p.tensors[s.src].shape);
      vals[s.out] = s.bias ? y.map((v, i) => v + s.bias![i]) : y;
    }
  }
  return vals;
}
