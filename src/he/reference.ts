import { type Graph, type WeightMap, INPUT, inferShapes, weightKey } from '../models/graph.js';
import type { HeProgram, StructOp } from './program.js';
import { applyStruct, applyWeighted } from './expr.js';
import { size } from './tensor-ops.js';
import { opOf } from '../ops/registry.js';

/**
 * Float64 references: the graph evaluated directly (every node's value, for per-layer range
 * checks) and the compiled HE program evaluated without encryption (every tensor's exact
 * value, what --trace compares decrypted layers against).
 */

/** Every node's output for one sample (inference mode), each op's float64 reference face. */
export function graphForward(graph: Graph, weights: WeightMap, x: Float64Array): Map<string, Float64Array> {
  const shapes = inferShapes(graph);
  const vals = new Map<string, Float64Array>([[INPUT, x]]);
  for (const node of graph.nodes) {
    const ref = opOf(node).referenceForward;
    const out = ref({
      layer: node.layer,
      node: node.name,
      ins: node.inputs.map((n) => vals.get(n)!),
      inShapes: node.inputs.map((n) => shapes.get(n)!),
      w: (p) => weights.get(weightKey(node.name, p))!.data,
    });
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

/** A struct op on plain values (the compiler's own, src/he/expr.ts). */
export function applyStructOp(op: StructOp, x: Float64Array, shape: number[]): Float64Array {
  return applyStruct(op, x, shape);
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
    } else if (s.kind === 'dot') {
      vals[s.out] = dotForward(p, s, vals);
    } else {
      const y = applyStructOp(s.op, vals[s.src], p.tensors[s.src].shape);
      vals[s.out] = s.bias ? y.map((v, i) => v + s.bias![i]) : y;
    }
  }
  return vals;
}

/** A dot step in exact arithmetic: the signed pair products, the plaintext terms, the bias. */
function dotForward(p: HeProgram, s: Extract<HeProgram['steps'][number], { kind: 'dot' }>, vals: Float64Array[]): Float64Array {
  const out = new Float64Array(size(p.tensors[s.out].shape));
  const a = vals[s.a];
  const b = vals[s.b];
  const { pairs } = s;
  for (let k = 0; k < pairs.out.length; k++) out[pairs.out[k]] += (pairs.sign ? pairs.sign[k] : 1) * a[pairs.a[k]] * b[pairs.b[k]];
  for (const t of s.terms) {
    const y = applyWeighted(t.op, vals[t.src], p.tensors[t.src].shape);
    for (let i = 0; i < out.length; i++) out[i] += y[i];
  }
  if (s.bias) for (let i = 0; i < out.length; i++) out[i] += s.bias[i];
  return out;
}
