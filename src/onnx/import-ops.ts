import type { NodeProto } from './proto.js';
import { Attributes } from './read.js';
import type { ConstTensor } from './tensor.js';
import type { ImportState, OpImporter } from './import-state.js';
import { linearOps } from './import-linear.js';
import { elementwiseOps } from './import-elementwise.js';
import { BATCH, concat, gather, reshapeConst, sliceConst, squeeze, transposeConst, unsqueeze } from './const-fold.js';

export type { OpImporter } from './import-state.js';

/** The fix every non-polynomial op is refused with. */
export const NON_POLYNOMIAL_FIX = 'retrain with a polynomial activation, or distill into a hepoly student: `distill.teacher: MODEL.onnx`';

/** Ops that CKKS cannot evaluate (no additions-and-multiplications form). */
export const NON_POLYNOMIAL = new Set([
  'Relu', 'LeakyRelu', 'PRelu', 'Elu', 'Selu', 'Celu', 'Gelu', 'Erf', 'Sigmoid', 'HardSigmoid', 'HardSwish', 'Tanh', 'Softplus', 'Softsign', 'Mish',
  'Softmax', 'LogSoftmax', 'MaxPool', 'GlobalMaxPool', 'LpPool', 'Exp', 'Log', 'Sqrt', 'Reciprocal', 'Abs', 'Sign', 'Clip', 'Max', 'Min', 'ThresholdedRelu',
]);

const passThrough: OpImporter = (s, node) => {
  const v = s.value(node, 0);
  s.setOutput(node, v.kind === 'const' ? v : { ...v, exclusive: s.exclusiveInputs(node, [v]) });
};

function constInputs(s: ImportState, node: NodeProto): ConstTensor[] {
  return (node.input ?? []).filter(Boolean).map((_, i) => s.constant(node, i, `input ${i}`));
}

/** Shape arithmetic between constants (the Shape -> Gather -> Concat -> Reshape chains of exporters). */
const shapeOps: Record<string, OpImporter> = {
  Constant: (s, node, a) => {
    const t = a.tensor('value');
    if (t) return s.setOutput(node, { kind: 'const', t });
    const f = a.has('value_float') ? [a.float('value_float', 0)] : a.floats('value_floats');
    const i = a.has('value_int') ? [a.int('value_int', 0)] : a.has('value_ints') ? a.ints('value_ints', []) : undefined;
    const vals = f ?? i;
    if (!vals) return s.fail(node, 'it has no value, value_float(s) or value_int(s) attribute', 'hepoly reads numeric Constant nodes only');
    const scalar = a.has('value_float') || a.has('value_int');
    s.setOutput(node, { kind: 'const', t: { dims: scalar ? [] : [vals.length], data: Float64Array.from(vals) } });
  },
  Shape: (s, node, a) => {
    const v = s.value(node, 0);
    const full = v.kind === 'const' ? v.t.dims : [BATCH, ...v.dims];
    const start = a.int('start', 0);
    const end = a.has('end') ? a.int('end', full.length) : full.length;
    const picked = full.slice(start < 0 ? start + full.length : start, end < 0 ? end + full.length : end);
    s.setOutput(node, { kind: 'const', t: { dims: [picked.length], data: Float64Array.from(picked) } });
  },
  Gather: (s, node, a) => {
    const [data, idx] = constInputs(s, node);
    s.setOutput(node, { kind: 'const', t: gather(data, idx, a.int('axis', 0)) });
  },
  Unsqueeze: (s, node, a, opset) => {
    const t = s.constant(node, 0, 'data');
    const axes = opset >= 13 ? Array.from(s.constant(node, 1, 'axes').data) : a.ints('axes', []);
    s.setOutput(node, { kind: 'const', t: unsqueeze(t, axes) });
  },
  Squeeze: (s, node, a, opset) => {
    const t = s.constant(node, 0, 'data');
    const axes = opset >= 13 ? (node.input?.[1] ? Array.from(s.constant(node, 1, 'axes').data) : undefined) : a.has('axes') ? a.ints('axes', []) : undefined;
    s.setOutput(node, { kind: 'const', t: squeeze(t, axes) });
  },
  Concat: (s, node, a) => {
    s.setOutput(node, { kind: 'const', t: concat(constInputs(s, node), a.int('axis', 0)) });
  },
  Cast: (s, node) => {
    const v = s.value(node, 0);
    if (v.kind === 'tensor') return passThrough(s, node, new Attributes(node), 0);
    s.setOutput(node, v);
  },
  ConstantOfShape: (s, node, a) => {
    const dims = Array.from(s.constant(node, 0, 'shape').data);
    if (dims.some((d) => d < 0)) s.fail(node, `a shape [${dims.join(', ')}] that depends on the batch size`, 'export with constant shapes');
    const v = a.tensor('value')?.data[0] ?? 0;
    s.setOutput(node, { kind: 'const', t: { dims, data: new Float64Array(dims.reduce((p, d) => p * d, 1)).fill(v) } });
  },
  Slice: (s, node, a, opset) => {
    const t = s.constant(node, 0, 'data');
    const list = (i: number, attr: string) => (opset >= 10 ? (node.input?.[i] ? Array.from(s.constant(node, i, attr).data) : undefined) : a.has(attr) ? a.ints(attr, []) : undefined);
    s.setOutput(node, { kind: 'const', t: sliceConst(t, list(1, 'starts') ?? [], list(2, 'ends') ?? [], list(3, 'axes'), list(4, 'steps')) });
  },
  Identity: passThrough,
  Dropout: passThrough,
};

/** Reshape and Transpose of constants fold; of the data tensor they are layout changes (import-linear.ts). */
const constOrTensor =
  (forConst: (s: ImportState, node: NodeProto, a: Attributes, t: ConstTensor) => ConstTensor, forTensor: OpImporter): OpImporter =>
  (s, node, a, opset) => {
    const v = s.value(node, 0);
    if (v.kind === 'tensor') return forTensor(s, node, a, opset);
    s.setOutput(node, { kind: 'const', t: forConst(s, node, a, v.t) });
  };

/** Every ONNX op the importer reads, by op type. */
export const OP_IMPORTERS: Record<string, OpImporter> = {
  ...shapeOps,
  ...linearOps,
  ...elementwiseOps,
  Reshape: constOrTensor((s, node, _a, t) => reshapeConst(t, Array.from(s.constant(node, 1, 'shape').data)), linearOps.Reshape),
  Transpose: constOrTensor((_s, _node, a, t) => transposeConst(t, a.ints('perm', [...t.dims.keys()].reverse())), linearOps.Transpose),
};

