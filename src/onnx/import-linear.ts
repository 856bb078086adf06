import type { NodeProto } from './proto.js';
import type { Attributes } from './read.js';
import { numel, type ConstTensor } from './tensor.js';
import type { ImportState, OpImporter, TensorValue } from './import-state.js';
import { addPoly, constantPoly, mulPoly } from './poly.js';
import { BATCH, reshapeTarget, transposeConst } from './const-fold.js';

/** Layers with weights or a layout of their own: Conv, Gemm, MatMul, pooling, Pad, Flatten, Reshape, Transpose, BatchNormalization. */

const out = (node: string, shape: number[], dims: number[], view: TensorValue['view'], chw?: TensorValue['chw']): TensorValue => ({
  kind: 'tensor',
  node,
  shape,
  dims,
  view,
  ...(chw ? { chw } : {}),
  poly: null,
  exclusive: true,
});

function imageInput(s: ImportState, node: NodeProto): TensorValue {
  const x = s.tensor(node, 0);
  if (x.view !== 'nchw') {
    s.fail(node, `it reads a tensor of ONNX shape [N, ${x.dims.join(', ')}], ${x.view === 'nhwc' ? 'in NHWC order' : 'a flat vector'}, where ONNX ${node.op_type} needs NCHW`, 'export the model with a Transpose to NCHW before it (tf2onnx does so), or check the --layout');
  }
  return x;
}

/** TensorFlow's "same" padding (hepoly's): extra row/column at the end. */
function samePads(size: number, k: number, stride: number): [number, number] {
  const total = Math.max((Math.ceil(size / stride) - 1) * stride + k - size, 0);
  return [Math.floor(total / 2), total - Math.floor(total / 2)];
}

/** [top, left, bottom, right] of a Conv/AveragePool from `pads` or `auto_pad`. */
function convPads(s: ImportState, node: NodeProto, a: Attributes, h: number, w: number, k: number, stride: number): number[] {
  const auto = a.string('auto_pad', 'NOTSET');
  if (auto === 'VALID') return [0, 0, 0, 0];
  if (auto === 'SAME_UPPER' || auto === 'SAME_LOWER') {
    const [ht, hb] = samePads(h, k, stride);
    const [wl, wr] = samePads(w, k, stride);
    return auto === 'SAME_UPPER' ? [ht, wl, hb, wr] : [hb, wr, ht, wl];
  }
  const pads = a.ints('pads', [0, 0, 0, 0]);
  if (pads.length !== 4 || pads.some((p) => p < 0)) s.fail(node, `pads [${pads.join(', ')}] are not 4 non-negative values`, 'hepoly imports 2-D convolutions and pooling');
  return pads;
}

function squareAttr(s: ImportState, node: NodeProto, name: string, values: number[], fallback: number): number {
  const [a, b] = values.length ? values : [fallback, fallback];
  if (values.length > 2 || a !== b) s.fail(node, `${name} [${values.join(', ')}] differ between H and W`, `hepoly's layers use one ${name} for both; export with equal ones`);
  return a;
}

function addPad(s: ImportState, from: string, shape: number[], [top, left, bottom, right]: number[]): { node: string; shape: number[] } {
  if (top + left + bottom + right === 0) return { node: from, shape };
  const node = s.addNode('pad', { op: 'pad', top, bottom, left, right }, [from]);
  return { node, shape: [shape[0] + top + bottom, shape[1] + left + right, shape[2]] };
}

const Conv: OpImporter = (s, node, a) => {
  const x = imageInput(s, node);
  const wt = s.constant(node, 1, 'weights');
  const group = a.int('group', 1);
  if (wt.dims.length !== 4) s.fail(node, `weights of shape [${wt.dims.join(', ')}]`, 'hepoly imports 2-D convolutions (weights [O, I, k, k])');
  const [O, I, kh, kw] = wt.dims;
  const k = squareAttr(s, node, 'kernel_shape', [kh, kw], kh);
  const stride = squareAttr(s, node, 'strides', a.ints('strides', []), 1);
  if (a.ints('dilations', [1, 1]).some((d) => d !== 1)) s.fail(node, `dilations [${a.ints('dilations', [])}]`, 'hepoly convolutions are not dilated: export with dilation 1');
  const [C, H, W] = x.dims;
  // grouped (depthwise when group = C): weights [O, C/group, k, k], output block g reads input block g, as hepoly's groups
  if (I * group !== C || O % group !== 0) s.fail(node, `weights [${wt.dims.join(', ')}] with group=${group} on a tensor with ${C} channels`, 'check the exported model');
  const pads = convPads(s, node, a, H, W, k, stride);
  const [st, sb] = samePads(H, k, stride);
  const [sl, sr] = samePads(W, k, stride);
  const same = pads.join(',') === [st, sl, sb, sr].join(',');
  const input = s.materialize(node, node.input![0]);
  const padded = same ? { node: input, shape: x.shape } : addPad(s, input, x.shape, pads);
  const kernel = new Float64Array(wt.data.length);
  for (let o = 0; o < O; o++)
    for (let i = 0; i < I; i++) for (let r = 0; r < k; r++) for (let c = 0; c < k; c++) kernel[((r * k + c) * I + i) * O + o] = wt.data[((o * I + i) * k + r) * k + c];
  const b = s.optionalConstant(node, 2, 'bias');
  const layer = { op: 'conv2d' as const, filters: O, kernel: k, stride, padding: same ? ('same' as const) : ('valid' as const), bias: !!b, ...(group > 1 ? { groups: group } : {}) };
  const name = s.addNode('conv', layer, [padded.node], {
    kernel: { dims: [k, k, I, O], data: kernel },
    ...(b ? { bias: { dims: [O], data: b.data } } : {}),
  });
  const [ph, pw] = padded.shape;
  const oh = same ? Math.ceil(H / stride) : Math.floor((ph - k) / stride) + 1;
  const ow = same ? Math.ceil(W / stride) : Math.floor((pw - k) / stride) + 1;
  s.setOutput(node, out(name, [oh, ow, O], [O, oh, ow], 'nchw'));
};

const AveragePool: OpImporter = (s, node, a) => {
  const x = imageInput(s, node);
  const ks = a.ints('kernel_shape', []);
  const k = squareAttr(s, node, 'kernel_shape', ks, ks[0]);
  const stride = squareAttr(s, node, 'strides', a.ints('strides', []), 1);
  const [C, H, W] = x.dims;
  if (convPads(s, node, a, H, W, k, stride).some((p) => p !== 0)) {
    s.fail(node, 'padded average pooling', 'hepoly pools without padding: export with padding=0 (or pad before the pooling with a Pad node)');
  }
  if (a.int('ceil_mode', 0) === 1 && ((H - k) % stride !== 0 || (W - k) % stride !== 0)) {
    s.fail(node, 'ceil_mode=1 where it adds a partial window', 'export with ceil_mode=False');
  }
  const input = s.materialize(node, node.input![0]);
  const name = s.addNode('avgpool', { op: 'avgpool', size: k, stride }, [input]);
  const oh = Math.floor((H - k) / stride) + 1;
  const ow = Math.floor((W - k) / stride) + 1;
  s.setOutput(node, out(name, [oh, ow, C], [C, oh, ow], 'nchw'));
};

const GlobalAveragePool: OpImporter = (s, node) => {
  const x = imageInput(s, node);
  const input = s.materialize(node, node.input![0]);
  const name = s.addNode('gap', { op: 'global_avgpool' }, [input]);
  s.setOutput(node, out(name, [x.dims[0]], [x.dims[0], 1, 1], 'vec'));
};

/** A per-sample flatten: hepoly's flatten node for images, a relabelling for vectors. */
function flatten(s: ImportState, node: NodeProto, x: TensorValue): void {
  const F = numel(x.dims);
  if (x.view === 'vec') return s.setOutput(node, { ...x, dims: [F], exclusive: s.exclusiveInputs(node, [x]) });
  const input = s.materialize(node, node.input![0]);
  const name = s.addNode('flatten', { op: 'flatten' }, [input]);
  const [C, H, W] = x.dims;
  const reordered = x.view === 'nchw' && C > 1 && H * W > 1;
  s.setOutput(node, out(name, [F], [F], 'vec', reordered ? [C, H, W] : undefined));
}

const Flatten: OpImporter = (s, node, a) => {
  const x = s.tensor(node, 0);
  const axis = a.int('axis', 1);
  if (axis !== 1 && axis !== -x.dims.length) s.fail(node, `axis=${axis}`, 'hepoly flattens each sample (axis=1): torch.flatten(x, 1)');
  flatten(s, node, x);
};

const Reshape: OpImporter = (s, node) => {
  const x = s.tensor(node, 0);
  const target = Array.from(s.constant(node, 1, 'target shape').data);
  const dims = reshapeTarget(x, target, s.batchFixed);
  if (!dims) {
    return s.fail(node, `a reshape to [${target.map((d) => (d === BATCH ? 'batch' : d < -1 ? 'batch x k' : d)).join(', ')}] whose batch axis or sizes cannot be resolved for input [N, ${x.dims.join(', ')}] (a dynamic shape: it depends on the batch size)`, 'reshape each sample to a flat vector: x.view(x.size(0), -1) or torch.flatten(x, 1)');
  }
  if (dims.join(',') === x.dims.join(',')) return s.setOutput(node, { ...x, exclusive: s.exclusiveInputs(node, [x]) });
  if (dims.length !== 1) s.fail(node, `a reshape of [N, ${x.dims.join(', ')}] to [N, ${dims.join(', ')}]`, 'hepoly reshapes only to a flat vector [N, F] (before a Gemm or MatMul)');
  flatten(s, node, x);
};

const Transpose: OpImporter = (s, node, a) => {
  const x = s.tensor(node, 0);
  const perm = a.ints('perm', [...Array(x.dims.length + 1).keys()].reverse());
  const keep = { ...x, exclusive: s.exclusiveInputs(node, [x]) };
  const p = perm.join(',');
  if (perm.every((v, i) => v === i)) return s.setOutput(node, keep);
  if (x.view === 'nchw' && p === '0,2,3,1') return s.setOutput(node, { ...keep, view: 'nhwc', dims: x.shape });
  if (x.view === 'nhwc' && p === '0,3,1,2') return s.setOutput(node, { ...keep, view: 'nchw', dims: [x.shape[2], x.shape[0], x.shape[1]] });
  const moved = perm.slice(1).map((q) => x.dims[q - 1]);
  if (x.view === 'vec' && perm[0] === 0 && moved.filter((d) => d !== 1).length <= 1) return s.setOutput(node, { ...keep, dims: moved });
  s.fail(node, `perm [${perm.join(', ')}] on a tensor [N, ${x.dims.join(', ')}] (${x.view.toUpperCase()})`, 'hepoly imports transposes that switch NCHW and NHWC (perm [0, 2, 3, 1] or [0, 3, 1, 2]), e.g. before a Flatten');
};

const Pad: OpImporter = (s, node, a, opset) => {
  const x = s.tensor(node, 0);
  if (x.view === 'vec') s.fail(node, 'padding a flat vector', 'hepoly pads images (H and W)');
  if (a.string('mode', 'constant') !== 'constant') s.fail(node, `mode '${a.string('mode', '')}'`, 'hepoly pads with zeros (mode constant)');
  const pads = opset >= 11 ? Array.from(s.constant(node, 1, 'pads').data) : a.ints('pads', []);
  const value = opset >= 11 ? (s.optionalConstant(node, 2, 'constant_value')?.data[0] ?? 0) : a.float('value', 0);
  if (value !== 0) s.fail(node, `padding with ${value}`, 'hepoly pads with zeros');
  if (pads.length !== 8 || pads.some((p) => p < 0)) s.fail(node, `pads [${pads.join(', ')}]`, 'hepoly pads 4-D image tensors by non-negative amounts');
  const [hAxis, wAxis] = x.view === 'nchw' ? [2, 3] : [1, 2];
  if (pads.some((p, i) => p !== 0 && i % 4 !== hAxis && i % 4 !== wAxis)) s.fail(node, `pads [${pads.join(', ')}] pad the batch or channel axis`, 'hepoly pads H and W only');
  const input = s.materialize(node, node.input![0]);
  const padded = addPad(s, input, x.shape, [pads[hAxis], pads[wAxis], pads[4 + hAxis], pads[4 + wAxis]]);
  const [h, w, c] = padded.shape;
  s.setOutput(node, out(padded.node, padded.shape, x.view === 'nchw' ? [c, h, w] : [h, w, c], x.view));
};

const BatchNormalization: OpImporter = (s, node, a) => {
  const x = s.tensor(node, 0);
  if (a.int('training_mode', 0) !== 0) s.fail(node, 'training_mode=1', 'export the model in eval mode (model.eval())');
  if (x.view === 'nhwc' || (x.view === 'vec' && x.dims[0] !== numel(x.dims))) s.fail(node, `normalizing axis 1 of a [N, ${x.dims.join(', ')}] tensor, which is not its channel axis`, 'export with BatchNormalization on NCHW (or [N, F]) tensors');
  const [gamma, beta, mean, variance] = [1, 2, 3, 4].map((i) => s.constant(node, i, ['scale', 'bias', 'mean', 'variance'][i - 1]));
  const eps = a.float('epsilon', 1e-5);
  const scale = gamma.data.map((g, i) => g / Math.sqrt(variance.data[i] + eps));
  const shift = beta.data.map((b, i) => b - mean.data[i] * scale[i]);
  const dims = x.view === 'nchw' ? [x.dims[0], 1, 1] : x.dims;
  const perChannel = (data: Float64Array): ConstTensor => ({ dims, data });
  const p = addPoly(mulPoly(s.polyOf(x), constantPoly(s.channelConst(node, x, perChannel(scale)))), constantPoly(s.channelConst(node, x, perChannel(shift))));
  s.setOutput(node, { ...x, poly: { ...p, sources: [...p.sources, node.name ?? ''] }, exclusive: s.exclusiveInputs(node, [x]) });
};

/** y = x W + b from a Gemm or MatMul with constant weights [in, units]. */
function dense(s: ImportState, node: NodeProto, w: ConstTensor, bias: Float64Array | undefined): void {
  const x = s.tensor(node, 0);
  if (x.view !== 'vec' || x.dims.length !== 1) s.fail(node, `it reads [N, ${x.dims.join(', ')}]`, 'flatten the input first (hepoly dense layers read [N, F])');
  const [inF, units] = w.dims;
  if (inF !== x.dims[0]) s.fail(node, `weights [${w.dims.join(', ')}] on ${x.dims[0]} features`, 'check the exported model');
  const kernel = x.chw ? permuteRows(w.data, x.chw, units) : w.data;
  const input = s.materialize(node, node.input![0]);
  const name = s.addNode('dense', { op: 'dense', units, bias: !!bias }, [input], {
    kernel: { dims: [inF, units], data: kernel },
    ...(bias ? { bias: { dims: [units], data: bias } } : {}),
  });
  s.setOutput(node, out(name, [units], [units], 'vec'));
}

/** Rows in ONNX (c, h, w) flatten order -> hepoly's (h, w, c). */
function permuteRows(data: Float64Array, [C, H, W]: [number, number, number], units: number): Float64Array {
  const outRows = new Float64Array(data.length);
  for (let c = 0; c < C; c++)
    for (let h = 0; h < H; h++)
      for (let w = 0; w < W; w++) {
        const from = ((c * H + h) * W + w) * units;
        outRows.set(data.subarray(from, from + units), ((h * W + w) * C + c) * units);
      }
  return outRows;
}

const Gemm: OpImporter = (s, node, a) => {
  if (a.int('transA', 0) !== 0) s.fail(node, 'transA=1', 'export the layer as x @ W (torch.nn.Linear does)');
  let w = s.constant(node, 1, 'weights');
  if (w.dims.length !== 2) s.fail(node, `weights of shape [${w.dims.join(', ')}]`, 'Gemm weights are a matrix');
  if (a.int('transB', 0) === 1) w = transposeConst(w, [1, 0]);
  const alpha = a.float('alpha', 1);
  const beta = a.float('beta', 1);
  const units = w.dims[1];
  const c = s.optionalConstant(node, 2, 'bias');
  if (c && numel(c.dims) !== 1 && numel(c.dims) !== units) s.fail(node, `a bias of shape [${c.dims.join(', ')}]`, `hepoly dense layers add one bias per unit (${units})`);
  const bias = c ? Float64Array.from({ length: units }, (_, i) => beta * c.data[c.data.length === 1 ? 0 : i]) : undefined;
  dense(s, node, { dims: w.dims, data: w.data.map((v) => v * alpha) }, bias);
};

const MatMul: OpImporter = (s, node) => {
  const w = s.constant(node, 1, 'weights');
  if (w.dims.length !== 2) s.fail(node, `weights of shape [${w.dims.join(', ')}]`, 'hepoly imports MatMul by a constant matrix [in, units]');
  dense(s, node, w, undefined);
};

export const linearOps: Record<string, OpImporter> = { Conv, AveragePool, GlobalAveragePool, Flatten, Reshape, Transpose, Pad, BatchNormalization, Gemm, MatMul };
