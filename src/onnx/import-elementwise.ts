import type { NodeProto } from './proto.js';
import type { ImportState, OpImporter, TensorValue } from './import-state.js';
import { BINARY, broadcastBinary } from './const-fold.js';
import { addPoly, constantPoly, isScalar, mulPoly, powPoly, scalePoly, MAX_DEGREE, type Poly } from './poly.js';

/**
 * Add, Sub, Mul, Div, Pow and Neg. Against constants, or between two uses of one tensor, they
 * extend the tensor's pending polynomial (import-state.ts lowers it when the tensor is read by
 * anything else); Add/Sub of two different tensors is a residual `add` layer.
 */

function withPoly(s: ImportState, node: NodeProto, inputs: TensorValue[], base: TensorValue, p: Poly): void {
  s.setOutput(node, { ...base, poly: { ...p, sources: [...p.sources, node.name || node.output![0]] }, exclusive: s.exclusiveInputs(node, inputs) });
}

/**
 * Before a product raises the degree: a pending per-channel affine (a bias Add after a MatMul,
 * a BatchNormalization) is lowered first, folded into the layer before it or made a batchnorm,
 * so the activation that follows keeps scalar coefficients: (x W + b)^2 is dense(bias) -> square.
 */
function lowerAffine(s: ImportState, node: NodeProto, i: number): TensorValue {
  const v = s.tensor(node, i);
  if (v.poly && v.poly.coeffs.length === 2 && !isScalar(v.poly)) {
    s.materialize(node, node.input![i]);
    return s.tensor(node, i);
  }
  return v;
}

const sameTensor = (a: TensorValue, b: TensorValue) => a.node === b.node && a.view === b.view && a.dims.join(',') === b.dims.join(',') && String(a.chw) === String(b.chw);

function binary(op: 'Add' | 'Sub' | 'Mul' | 'Div'): OpImporter {
  return (s, node) => {
    const a = s.value(node, 0);
    const b = s.value(node, 1);
    if (a.kind === 'const' && b.kind === 'const') return s.setOutput(node, { kind: 'const', t: broadcastBinary(a.t, b.t, BINARY[op]) });
    if (a.kind === 'tensor' && b.kind === 'tensor') return betweenTensors(s, node, op, a, b);
    const t = (a.kind === 'tensor' ? a : b) as TensorValue;
    const c = a.kind === 'const' ? a.t : b.kind === 'const' ? b.t : null;
    const k = s.channelConst(node, t, c!);
    const p = s.polyOf(t);
    const tensorFirst = a.kind === 'tensor';
    if (op === 'Div' && !tensorFirst) s.fail(node, 'a division by the data tensor', 'a reciprocal is not a polynomial: retrain without it, or distill into a hepoly student: `distill.teacher: MODEL.onnx`');
    const result =
      op === 'Add'
        ? addPoly(p, constantPoly(k))
        : op === 'Sub'
          ? tensorFirst
            ? addPoly(p, constantPoly(k.map((v) => -v)))
            : addPoly(scalePoly(p, -1), constantPoly(k))
          : op === 'Mul'
            ? mulPoly(p, constantPoly(k))
            : mulPoly(p, constantPoly(k.map((v) => 1 / v)));
    withPoly(s, node, [t], t, result);
  };
}

function betweenTensors(s: ImportState, node: NodeProto, op: 'Add' | 'Sub' | 'Mul' | 'Div', a: TensorValue, b: TensorValue): void {
  if (sameTensor(a, b) && op !== 'Div') {
    if (op === 'Mul') {
      a = lowerAffine(s, node, 0);
      b = lowerAffine(s, node, 1);
    }
    const p = s.polyOf(a);
    const q = s.polyOf(b);
    const r = op === 'Add' ? addPoly(p, q) : op === 'Sub' ? addPoly(p, scalePoly(q, -1)) : mulPoly(p, q);
    if (r.coeffs.length - 1 > MAX_DEGREE) s.fail(node, `the polynomial reaches degree ${r.coeffs.length - 1}`, `hepoly's activations go up to degree ${MAX_DEGREE}`);
    return withPoly(s, node, [a, b], a, r);
  }
  if (op === 'Mul' || op === 'Div') {
    s.fail(node, `${op === 'Mul' ? 'a product' : 'a quotient'} of two different tensors`, "hepoly's layers multiply a tensor by weights or by itself (polynomial activations); export the model without this product");
  }
  if (a.view !== b.view || a.shape.join(',') !== b.shape.join(',') || String(a.chw) !== String(b.chw)) {
    s.fail(node, `it adds tensors of shapes [N, ${a.dims.join(', ')}] and [N, ${b.dims.join(', ')}]`, 'hepoly adds tensors of one shape and layout (residual connections)');
  }
  const left = s.materialize(node, node.input![0]);
  let right: string;
  if (op === 'Sub') {
    // x - y = x + (-1 * y): the -1 folds into the layer that made y, or becomes a batchnorm
    const negated = `${node.input![1]}\u0000negated`;
    s.values.set(negated, { ...b, poly: scalePoly(s.polyOf(b), -1), exclusive: s.exclusiveInputs(node, [b]) });
    right = s.materialize(node, negated);
  } else {
    right = s.materialize(node, node.input![1]);
  }
  const name = s.addNode('add', { op: 'add' }, [left, right]);
  s.setOutput(node, { kind: 'tensor', node: name, shape: a.shape, dims: a.dims, view: a.view, ...(a.chw ? { chw: a.chw } : {}), poly: null, exclusive: true });
}

const Pow: OpImporter = (s, node) => {
  const x = lowerAffine(s, node, 0);
  const e = s.constant(node, 1, 'exponent');
  const k = e.data[0];
  if (e.data.length !== 1 || !Number.isInteger(k) || k < 1 || k > MAX_DEGREE) {
    s.fail(node, `exponent ${e.data.length === 1 ? k : `[${Array.from(e.data).join(', ')}]`}`, `hepoly imports Pow with one constant integer exponent from 1 to ${MAX_DEGREE} (a polynomial)`);
  }
  const r = powPoly(s.polyOf(x), k);
  if (r.coeffs.length - 1 > MAX_DEGREE) s.fail(node, `the polynomial reaches degree ${r.coeffs.length - 1}`, `hepoly's activations go up to degree ${MAX_DEGREE}`);
  withPoly(s, node, [x], x, r);
};

const Neg: OpImporter = (s, node) => {
  const x = s.value(node, 0);
  if (x.kind === 'const') return s.setOutput(node, { kind: 'const', t: { dims: x.t.dims, data: x.t.data.map((v) => -v) } });
  withPoly(s, node, [x], x, scalePoly(s.polyOf(x), -1));
};

export const elementwiseOps: Record<string, OpImporter> = { Add: binary('Add'), Sub: binary('Sub'), Mul: binary('Mul'), Div: binary('Div'), Pow, Neg };
