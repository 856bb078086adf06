import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { GraphNode, WeightMap } from '../models/graph.js';
import { INPUT, inferShapes, isSequenceOp, layerOf, weightKey } from '../models/graph.js';
import { diracDeltaValues } from '../models/tf-interpreter.js';
import type { Checkpoint } from '../train/checkpoint.js';
import { shortPath } from '../recipe/load.js';
import { HepolyError } from '../util/errors.js';
import { writeFileAtomic } from '../util/atomic-file.js';
import { checkOutputFile } from '../util/output-guard.js';
import { AttrType, encodeModel, type AttributeProto, type ModelProto, type NodeProto, type TensorProto } from './proto.js';
import { floatTensor, int64Tensor } from './tensor.js';

/** ai.onnx opset of exported models: the newest that Debian's onnx checker (1.12) and onnxruntime both know. */
export const EXPORT_OPSET = 17;

type Layout = 'nchw' | 'vec';
interface Emitted {
  name: string;
  layout: Layout;
}

function attr(name: string, v: number | number[] | string): AttributeProto {
  if (typeof v === 'string') return { name, type: AttrType.STRING, s: new TextEncoder().encode(v) };
  if (Array.isArray(v)) return { name, type: AttrType.INTS, ints: v };
  return Number.isInteger(v) ? { name, type: AttrType.INT, i: v } : { name, type: AttrType.FLOAT, f: v };
}

/** Collects ONNX nodes and initializers with unique names. */
class OnnxWriter {
  readonly nodes: NodeProto[] = [];
  readonly initializers: TensorProto[] = [];
  private count = 0;

  op(opType: string, inputs: string[], name: string, attrs: AttributeProto[] = []): string {
    const output = `${name}_${opType.toLowerCase()}${this.count++}`;
    this.nodes.push({ op_type: opType, name: output, input: inputs, output: [output], attribute: attrs });
    return output;
  }

  weight(name: string, dims: number[], values: ArrayLike<number>): string {
    this.initializers.push(floatTensor(name, dims, values));
    return name;
  }

  ints(name: string, values: number[]): string {
    this.initializers.push(int64Tensor(name, [values.length], values));
    return name;
  }
}

/** TensorFlow's "same" padding split (hepoly's convention): the extra row/column at the end. */
function samePads(size: number, k: number, stride: number): [number, number] {
  const total = Math.max((Math.ceil(size / stride) - 1) * stride + k - size, 0);
  return [Math.floor(total / 2), total - Math.floor(total / 2)];
}

/** HWIO [k, k, cin, cout] -> OIHW [cout, cin, k, k]. */
function toOihw(data: Float32Array, [k, , cin, cout]: number[]): Float32Array {
  const out = new Float32Array(data.length);
  for (let r = 0; r < k; r++)
    for (let c = 0; c < k; c++) for (let i = 0; i < cin; i++) for (let o = 0; o < cout; o++) out[((o * cin + i) * k + r) * k + c] = data[((r * k + c) * cin + i) * cout + o];
  return out;
}

/**
 * A checkpoint's network as an ONNX model: standard ai.onnx ops only (polynomial activations as
 * Mul/Add of scalar initializers), NCHW image input with a dynamic batch axis, the logits as
 * output, and the input preprocessing in metadata_props.
 */
export function toOnnxModel(ckpt: Pick<Checkpoint, 'graph' | 'weights' | 'preprocess' | 'recipe' | 'dir'>): ModelProto {
  const { graph, weights } = ckpt;
  const where = shortPath(ckpt.dir);
  const w = new OnnxWriter();
  const sequence = graph.nodes.find((n) => isSequenceOp(layerOf(n)));
  if (sequence) {
    throw new HepolyError(`${where}: layer ${sequence.name} (${layerOf(sequence).op}): transformer layers have no export to standard ONNX ops yet. Export MLP, CNN or ResNet checkpoints`);
  }
  const shapes = inferShapes(graph);
  const image = graph.inputShape.length === 3;
  if (!image && graph.inputShape.length !== 1) {
    throw new HepolyError(`${where}: input shape [${graph.inputShape.join(', ')}]: hepoly exports image ([H, W, C]) and vector inputs to ONNX; sequence models (transformers) are not exported yet`);
  }
  const values = new Map<string, Emitted>([[INPUT, { name: 'input', layout: image ? 'nchw' : 'vec' }]]);
  for (const node of graph.nodes) {
    const ins = node.inputs.map((n) => values.get(n)!);
    values.set(node.name, emitNode(w, node, ins, shapes.get(node.inputs[0])!, weights, where));
  }
  const out = values.get(graph.output)!;
  const last = w.nodes.find((n) => n.output![0] === out.name);
  if (!last) throw new HepolyError(`${where}: the graph's output is its input; nothing to export`);
  for (const n of w.nodes) n.input = n.input!.map((i) => (i === out.name ? 'logits' : i));
  last.output = ['logits'];
  const [h, wd, c] = graph.inputShape;
  const inputDims = image ? ['batch', c, h, wd] : ['batch', graph.inputShape[0]];
  const dim = (d: number | string) => (typeof d === 'number' ? { dim_value: d } : { dim_param: d });
  const tensorInfo = (name: string, dims: (number | string)[]) => ({ name, type: { tensor_type: { elem_type: 1, shape: { dim: dims.map(dim) } } } });
  return {
    ir_version: 8,
    producer_name: 'hepoly',
    producer_version: '1',
    doc_string: `hepoly checkpoint ${ckpt.recipe.name}: logits of a polynomial network; preprocess the input as metadata hepoly.normalize says`,
    opset_import: [{ domain: '', version: EXPORT_OPSET }],
    graph: {
      name: ckpt.recipe.name,
      node: w.nodes,
      initializer: w.initializers,
      input: [tensorInfo('input', inputDims)],
      output: [tensorInfo('logits', ['batch', graph.classes])],
    },
    metadata_props: metadata(ckpt, image),
  };
}

function metadata(ckpt: Pick<Checkpoint, 'graph' | 'preprocess' | 'recipe'>, image: boolean): { key: string; value: string }[] {
  const p = ckpt.preprocess;
  return Object.entries({
    'hepoly.model': ckpt.recipe.name,
    'hepoly.input_layout': image ? 'NCHW' : 'flat',
    'hepoly.input_shape_nhwc': JSON.stringify(ckpt.graph.inputShape),
    'hepoly.labels': JSON.stringify(p.labels),
    'hepoly.normalize': JSON.stringify(p.normalize),
    ...(p.features ? { 'hepoly.features': JSON.stringify(p.features) } : {}),
    'hepoly.preprocess': 'x_model = normalize(x_raw) as hepoly.normalize states (standard: (x - mean[j]) / std[j]; minmax: (x - min[j]) / (max[j] - min[j]); affine: x * scale + shift), then NHWC -> NCHW for images',
  }).map(([key, value]) => ({ key, value }));
}

function emitNode(w: OnnxWriter, node: GraphNode, ins: Emitted[], inShape: number[], weights: WeightMap, where: string): Emitted {
  const L = node.layer;
  const x = ins[0];
  const get = (param: string) => weights.get(weightKey(node.name, param))!;
  switch (L.op) {
    case 'dense': {
      const k = get('kernel');
      const inputs = [x.name, w.weight(`${node.name}.kernel`, k.shape, k.data)];
      if (L.bias) inputs.push(w.weight(`${node.name}.bias`, [L.units], get('bias').data));
      return { name: w.op('Gemm', inputs, node.name), layout: 'vec' };
    }
    case 'conv2d': {
      const k = get('kernel');
      const groups = (L as { groups?: number }).groups ?? 1;
      let kernel = k.data;
      if (L.dirac) {
        // W + alpha * identity, the kernel the network computes with (models/fold.ts does the same)
        const delta = diracDeltaValues(k.shape);
        const alpha = get('alpha').data;
        kernel = Float32Array.from(k.data, (v, i) => v + delta[i] * alpha[i % k.shape[3]]);
      }
      const [ph, pw] = [samePads(inShape[0], L.kernel, L.stride), samePads(inShape[1], L.kernel, L.stride)];
      const pads = L.padding === 'same' ? [ph[0], pw[0], ph[1], pw[1]] : [0, 0, 0, 0];
      const inputs = [x.name, w.weight(`${node.name}.kernel`, [L.filters, k.shape[2], L.kernel, L.kernel], toOihw(kernel, k.shape))];
      if (L.bias) inputs.push(w.weight(`${node.name}.bias`, [L.filters], get('bias').data));
      const attrs = [attr('kernel_shape', [L.kernel, L.kernel]), attr('strides', [L.stride, L.stride]), attr('pads', pads), attr('dilations', [1, 1]), attr('group', groups)];
      return { name: w.op('Conv', inputs, node.name, attrs), layout: 'nchw' };
    }
    case 'activation':
      return { name: emitActivation(w, node, x.name, weights, where), layout: x.layout };
    case 'avgpool':
    case 'maxpool': {
      const attrs = [attr('kernel_shape', [L.size, L.size]), attr('strides', [L.stride, L.stride])];
      return { name: w.op(L.op === 'avgpool' ? 'AveragePool' : 'MaxPool', [x.name], node.name, attrs), layout: 'nchw' };
    }
    case 'global_avgpool': {
      const pooled = w.op('GlobalAveragePool', [x.name], node.name);
      return { name: w.op('Flatten', [pooled], node.name, [attr('axis', 1)]), layout: 'vec' };
    }
    case 'batchnorm': {
      const p = ['gamma', 'beta', 'moving_mean', 'moving_variance'].map((q) => w.weight(`${node.name}.${q}`, get(q).shape, get(q).data));
      return { name: w.op('BatchNormalization', [x.name, ...p], node.name, [attr('epsilon', L.epsilon)]), layout: x.layout };
    }
    case 'flatten': {
      if (x.layout === 'vec') return x;
      // hepoly flattens (h, w, c): back to NHWC first, so the next Gemm's rows stay in hepoly's order
      const nhwc = w.op('Transpose', [x.name], node.name, [attr('perm', [0, 2, 3, 1])]);
      return { name: w.op('Flatten', [nhwc], node.name, [attr('axis', 1)]), layout: 'vec' };
    }
    case 'pad': {
      const pads = w.ints(`${node.name}.pads`, [0, 0, L.top, L.left, 0, 0, L.bottom, L.right]);
      return { name: w.op('Pad', [x.name, pads], node.name, [attr('mode', 'constant')]), layout: 'nchw' };
    }
    case 'add': {
      let sum = x.name;
      for (const other of ins.slice(1)) sum = w.op('Add', [sum, other.name], node.name);
      return { name: sum, layout: x.layout };
    }
    default:
      throw new HepolyError(`${where}: layer ${node.name} (${(L as { op: string }).op}) has no ONNX export yet. Export MLP, CNN or ResNet checkpoints`);
  }
}

/** c0 + c1 x + c2 x^2 + ... as Mul/Add of scalar initializers (hepoly import reads it back as the same activation). */
function emitActivation(w: OnnxWriter, node: GraphNode, x: string, weights: WeightMap, where: string): string {
  const L = node.layer as Extract<GraphNode['layer'], { op: 'activation' }>;
  const a = L.activation;
  if (a.kind === 'relu') return w.op('Relu', [x], node.name);
  if (a.kind === 'gelu') throw new HepolyError(`${where}: layer ${node.name}: the gelu activation has no exact standard ONNX form before opset 20. Export a polynomial network`);
  const coeffs = a.kind === 'square' ? [0, 0, 1] : Array.from(weights.get(weightKey(node.name, 'coeffs'))!.data);
  if (coeffs.length === 3 && coeffs[0] === 0 && coeffs[1] === 0 && coeffs[2] === 1) return w.op('Mul', [x, x], node.name);
  const powers = [x];
  for (let k = 2; k < coeffs.length; k++) powers.push(w.op('Mul', [powers[powers.length - 1], x], node.name));
  let sum: string | null = null;
  for (let k = 1; k < coeffs.length; k++) {
    if (coeffs[k] === 0) continue;
    const term = w.op('Mul', [powers[k - 1], w.weight(`${node.name}.c${k}`, [], [coeffs[k]])], node.name);
    sum = sum ? w.op('Add', [sum, term], node.name) : term;
  }
  if (sum === null) throw new HepolyError(`${where}: layer ${node.name}: the activation's polynomial is a constant (${coeffs[0]}): nothing to export. Retrain the checkpoint`);
  return coeffs[0] === 0 ? sum : w.op('Add', [sum, w.weight(`${node.name}.c0`, [], [coeffs[0]])], node.name);
}

export interface ExportOnnxResult {
  out: string;
  bytes: number;
  nodes: number;
  opset: number;
}

/** `hepoly export CHECKPOINT --format onnx --out MODEL.onnx`: written atomically. */
export function exportOnnx(ckpt: Checkpoint, out: string): ExportOnnxResult {
  const model = toOnnxModel(ckpt);
  const bytes = encodeModel(model);
  // an existing file is replaced only when hepoly wrote it (its producer_name, near the start)
  const path = checkOutputFile(out, '--out', (head) => head.includes('hepoly'));
  writeFileAtomic(path, bytes);
  return { out: path, bytes: bytes.length, nodes: model.graph!.node!.length, opset: EXPORT_OPSET };
}


