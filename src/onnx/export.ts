import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { Graph, GraphNode, WeightMap } from '../models/graph.js';
import { INPUT, inferShapes, weightKey } from '../models/graph.js';
import { foldForInference } from '../models/fold.js';
import { opOf } from '../ops/registry.js';
import type { OnnxAttributes, OnnxBuilder, OnnxValue } from '../ops/onnx-face.js';
import type { Checkpoint } from '../train/checkpoint.js';
import { shortPath } from '../util/paths.js';
import { HepolyError } from '../util/errors.js';
import { writeFileAtomic } from '../util/atomic-file.js';
import { checkOutputFile } from '../util/output-guard.js';
import { AttrType, encodeModel, type AttributeProto, type ModelProto, type NodeProto, type TensorProto } from './proto.js';
import { floatTensor, int64Tensor } from './tensor.js';

/** ai.onnx opset of exported models: the newest that Debian's onnx checker (1.12) and onnxruntime both know. */
export const EXPORT_OPSET = 17;

function attr(name: string, v: OnnxAttributes[string]): AttributeProto {
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

  /** what one layer's ONNX face writes with: nodes and initializers named after the layer */
  builderFor(layer: string): OnnxBuilder {
    return {
      node: (opType, inputs, attributes = {}) => this.op(opType, inputs, layer, Object.entries(attributes).map(([k, v]) => attr(k, v))),
      weight: (suffix, dims, values) => this.weight(`${layer}.${suffix}`, dims, values),
      ints: (suffix, values) => this.ints(`${layer}.${suffix}`, values),
    };
  }
}

/**
 * A checkpoint's network as an ONNX model: standard ai.onnx ops only (polynomial activations as
 * Mul/Add of scalar initializers), NCHW image input with a dynamic batch axis, the logits as
 * output, and the input preprocessing in metadata_props.
 */
export function toOnnxModel(ckpt: Pick<Checkpoint, 'graph' | 'weights' | 'preprocess' | 'recipe' | 'dir'>): ModelProto {
  // training-time parameterizations (the Dirac conv) become the plain layers the network computes with
  const { graph, weights } = foldForInference(ckpt.graph, ckpt.weights);
  const where = shortPath(ckpt.dir);
  const w = new OnnxWriter();
  refuseWithoutOnnxFace(graph, where);
  const shapes = inferShapes(graph);
  const image = graph.inputShape.length === 3;
  if (!image && graph.inputShape.length !== 1) {
    throw new HepolyError(`${where}: input shape [${graph.inputShape.join(', ')}]: hepoly exports image ([H, W, C]) and vector inputs to ONNX; sequence models (transformers) are not exported yet`);
  }
  const values = new Map<string, OnnxValue>([[INPUT, { name: 'input', layout: image ? 'nchw' : 'vec' }]]);
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

/** Every layer before anything is written: an op without an ONNX face is named with the fix. */
function refuseWithoutOnnxFace(graph: Graph, where: string): void {
  for (const node of graph.nodes) {
    const def = opOf(node);
    if (def.onnx) continue;
    throw new HepolyError(
      `${where}: layer ${node.name} (${def.name}): the ${def.name} op has no ONNX face (src/ops/${def.family}.ts), so it has no export to standard ONNX ops yet. ` +
        'Export MLP, CNN or ResNet checkpoints (transformer layers are not exported yet)',
    );
  }
}

/** One layer through its op's ONNX face. */
function emitNode(w: OnnxWriter, node: GraphNode, ins: OnnxValue[], inShape: number[], weights: WeightMap, where: string): OnnxValue {
  return opOf(node).onnx!.export({
    layer: node.layer,
    node: node.name,
    ins,
    inShape,
    w: (param) => weights.get(weightKey(node.name, param))!,
    onnx: w.builderFor(node.name),
    where,
  });
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


