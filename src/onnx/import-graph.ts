import type { Graph, GraphNode, WeightMap } from '../models/graph.js';
import { INPUT, inferShapes } from '../models/graph.js';
import { HepolyError } from '../util/errors.js';
import { shortPath } from '../util/paths.js';
import type { ModelProto, NodeProto, ValueInfoProto } from './proto.js';
import { toNumber } from './proto.js';
import { Attributes, defaultOpset } from './read.js';
import { decodeTensor } from './tensor.js';
import { ImportState, type ImportedActivation, type TensorValue } from './import-state.js';
import { NON_POLYNOMIAL, NON_POLYNOMIAL_FIX, OP_IMPORTERS } from './import-ops.js';

export type OnnxLayout = 'nchw' | 'nhwc' | 'flat';

export interface ImportOptions {
  /** the .onnx file, for messages */
  file: string;
  /** the data's per-sample shape (NHWC) and classes */
  dataShape: number[];
  classes: number;
  /** where the data shape comes from, for messages (e.g. "recipes/x.yaml: data") */
  dataWhere: string;
  layout?: 'nchw' | 'nhwc';
}

export interface ImportedNetwork {
  graph: Graph;
  weights: WeightMap;
  layout: OnnxLayout;
  activations: ImportedActivation[];
  /** the ONNX input declares batch 1: onnxruntime must be fed one sample at a time */
  batchFixed: boolean;
  inputName: string;
  outputName: string;
  opset: number;
}

const dimsOf = (v: ValueInfoProto): (number | null)[] =>
  (v.type?.tensor_type?.shape?.dim ?? []).map((d) => (d.dim_value !== undefined && toNumber(d.dim_value) > 0 ? toNumber(d.dim_value) : null));

/**
 * Which layout the ONNX input is in, from its declared shape and the data's. Unknown (symbolic)
 * sizes other than the batch are taken from the data; a mismatch names both shapes.
 */
export function inputLayout(declared: (number | null)[], o: ImportOptions, inputName: string): { layout: OnnxLayout; dims: number[] } {
  const sample = declared.slice(1);
  const shape = o.dataShape;
  const per = shape.reduce((a, b) => a * b, 1);
  const shown = `[${declared.map((d, i) => d ?? (i === 0 ? 'N' : '?')).join(', ')}]`;
  const mismatch = (expected: string) =>
    new HepolyError(
      `${shortPath(o.file)}: input '${inputName}' is ${shown}, but ${o.dataWhere} gives samples of shape [${shape.join(', ')}] (NHWC)${expected}. Import the model with the data it was trained on (or set data.shape for CSV images)`,
    );
  const fits = (want: number[]) => sample.length === want.length && sample.every((d, i) => d === null || d === want[i]);
  if (sample.length === 1) {
    if (!fits([per])) throw mismatch(`: the model takes ${sample[0]} features, the data has ${per}`);
    return { layout: 'flat', dims: [per] };
  }
  if (shape.length !== 3) throw mismatch(`: expected [N, ${per}]`);
  const [h, w, c] = shape;
  const nchw = [c, h, w];
  const nhwc = [h, w, c];
  const expected = `: expected [N, ${nchw.join(', ')}] (NCHW) or [N, ${nhwc.join(', ')}] (NHWC)`;
  if (o.layout) {
    const want = o.layout === 'nchw' ? nchw : nhwc;
    if (!fits(want)) throw mismatch(`, which is not ${o.layout.toUpperCase()} (expected [N, ${want.join(', ')}]); fix --layout`);
    return { layout: o.layout, dims: want };
  }
  const a = fits(nchw);
  const b = fits(nhwc);
  if (a && b) {
    throw new HepolyError(`${shortPath(o.file)}: input '${inputName}' ${shown} could be NCHW or NHWC for data [${shape.join(', ')}]. Pass --layout nchw (PyTorch exports) or --layout nhwc (Keras / tf2onnx exports)`);
  }
  if (!a && !b) throw mismatch(expected);
  return a ? { layout: 'nchw', dims: nchw } : { layout: 'nhwc', dims: nhwc };
}

function useCounts(nodes: NodeProto[], outputs: string[]): Map<string, number> {
  const uses = new Map<string, number>();
  for (const n of [...nodes.flatMap((x) => x.input ?? []), ...outputs]) if (n) uses.set(n, (uses.get(n) ?? 0) + 1);
  return uses;
}

function inputValue(s: ImportState, layout: OnnxLayout, dims: number[], dataShape: number[]): TensorValue {
  const base = { kind: 'tensor' as const, poly: null, exclusive: false };
  if (layout === 'nchw') return { ...base, node: INPUT, shape: dataShape, dims, view: 'nchw' };
  if (layout === 'nhwc') return { ...base, node: INPUT, shape: dataShape, dims, view: 'nhwc' };
  if (dataShape.length === 1) return { ...base, node: INPUT, shape: dataShape, dims, view: 'vec' };
  // a flat model input fed image data: hepoly flattens (h, w, c), as the data's CSV/IDX rows are
  const node = s.addNode('flatten', { op: 'flatten' }, [INPUT]);
  return { ...base, node, shape: dims, dims, view: 'vec' };
}

/** Reads an ONNX model into hepoly's network description and weights. */
export function importOnnxGraph(model: ModelProto, o: ImportOptions): ImportedNetwork {
  const g = model.graph!;
  const file = shortPath(o.file);
  const opset = defaultOpset(model);
  if (opset && (opset < 7 || opset > 21)) throw new HepolyError(`${file}: opset ${opset} is outside what hepoly reads (7-21; tested with 11-17). Export with opset_version=17`);
  const nodes = g.node ?? [];
  const outputs = (g.output ?? []).map((v) => v.name ?? '');
  if (outputs.length !== 1) throw new HepolyError(`${file}: the graph has ${outputs.length} outputs (${outputs.join(', ')}); hepoly imports classifiers with one output, the logits. Export only the logits`);
  const s = new ImportState(o.file, useCounts(nodes, outputs));
  for (const init of g.initializer ?? []) {
    try {
      s.values.set(init.name ?? '', { kind: 'const', t: decodeTensor(init) });
    } catch (e) {
      throw new HepolyError(`${file}: initializer '${init.name}': ${(e as Error).message}`);
    }
  }
  const inputs = (g.input ?? []).filter((v) => !s.values.has(v.name ?? ''));
  if (inputs.length !== 1) throw new HepolyError(`${file}: the graph has ${inputs.length} data inputs (${inputs.map((v) => v.name).join(', ')}); hepoly imports models with one input`);
  const input = inputs[0];
  const declared = dimsOf(input);
  if (declared.length < 2) throw new HepolyError(`${file}: input '${input.name}' has no declared shape ([N, C, H, W], [N, H, W, C] or [N, F] expected). Export with a fixed sample shape (a dummy input of the data's shape)`);
  if (declared[0] !== null && declared[0] !== 1) {
    throw new HepolyError(`${file}: input '${input.name}' has a fixed batch size of ${declared[0]}. Export with a dynamic batch axis (torch.onnx.export(..., dynamic_axes={'${input.name}': {0: 'batch'}}))`);
  }
  s.batchFixed = declared[0] === 1;
  const { layout, dims } = inputLayout(declared, o, input.name ?? '');
  s.values.set(input.name ?? '', inputValue(s, layout, dims, o.dataShape));
  for (const node of nodes) importNode(s, node, opset);
  const out = s.values.get(outputs[0]);
  const last = nodes[nodes.length - 1];
  if (!out || out.kind !== 'tensor') throw new HepolyError(`${file}: the output '${outputs[0]}' is not computed from the input. Export the model's logits`);
  const outName = s.materialize(last, outputs[0]);
  const final = s.values.get(outputs[0]) as TensorValue;
  if (final.view !== 'vec' || final.shape.length !== 1 || final.shape[0] !== o.classes) {
    throw new HepolyError(`${file}: the output '${outputs[0]}' has shape [N, ${final.dims.join(', ')}], but ${o.dataWhere} has ${o.classes} classes. Import with the data the model was trained on (its output must be [N, ${o.classes}] logits)`);
  }
  if (outName === INPUT) throw new HepolyError(`${file}: the output is the input itself. Import a network with layers`);
  const graph = finishGraph(s, o.dataShape, o.classes, outName);
  return { graph, weights: s.weights, layout, activations: s.activations, batchFixed: s.batchFixed, inputName: input.name ?? '', outputName: outputs[0], opset };
}

function importNode(s: ImportState, node: NodeProto, opset: number): void {
  const op = node.op_type ?? '';
  if (node.domain && node.domain !== 'ai.onnx') s.fail(node, `an op of domain '${node.domain}'`, 'hepoly imports standard ai.onnx ops only: export without custom or contrib ops');
  if (NON_POLYNOMIAL.has(op)) {
    const final = op === 'Softmax' || op === 'LogSoftmax' ? ' (a final Softmax: export the logits, without it)' : '';
    const pool = op === 'MaxPool' || op === 'GlobalMaxPool' ? 'use average pooling (nn.AvgPool2d) and ' : '';
    s.fail(node, `${op} is not a polynomial, so CKKS cannot evaluate it${final}`, pool + NON_POLYNOMIAL_FIX);
  }
  const importer = OP_IMPORTERS[op];
  if (!importer) {
    s.fail(node, `hepoly has no import for ${op}`, `supported: ${Object.keys(OP_IMPORTERS).sort().join(', ')}`);
  }
  try {
    importer(s, node, new Attributes(node), opset);
  } catch (e) {
    if (e instanceof HepolyError) throw e;
    s.fail(node, (e as Error).message, 'check the exported model (onnx.checker.check_model)');
  }
}

/**
 * Drops layers nothing reads (an unused Dropout mask, a dead branch), names the classifier
 * `logits` as hepoly's builders do, and checks the shapes once.
 */
function finishGraph(s: ImportState, inputShape: number[], classes: number, output: string): Graph {
  const live = new Set<string>([output]);
  for (let i = s.nodes.length - 1; i >= 0; i--) if (live.has(s.nodes[i].name)) s.nodes[i].inputs.forEach((n) => live.add(n));
  let nodes: GraphNode[] = s.nodes.filter((n) => live.has(n.name));
  let out = output;
  // hepoly's builders name the classifier `logits`, whatever its op (src/models/cnn.ts): so does the import
  if (!nodes.some((n) => n.name === 'logits')) {
    nodes = nodes.map((n) => ({ ...n, name: n.name === output ? 'logits' : n.name, inputs: n.inputs.map((x) => (x === output ? 'logits' : x)) }));
    for (const [k, w] of [...s.weights]) {
      if (k.startsWith(`${output}/`)) {
        s.weights.delete(k);
        s.weights.set(`logits/${k.slice(output.length + 1)}`, w);
      }
    }
    out = 'logits';
  }
  for (const k of [...s.weights.keys()]) if (!nodes.some((n) => k.startsWith(`${n.name}/`))) s.weights.delete(k);
  const graph: Graph = { inputShape, classes, nodes, output: out };
  inferShapes(graph);
  return graph;
}

