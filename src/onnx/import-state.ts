import type { ActivationSpec, GraphNode, LayerSpec, WeightMap } from '../models/graph.js';
import { weightKey } from '../models/graph.js';
import { HepolyError } from '../util/errors.js';
import { opOf } from '../ops/registry.js';
import { shortPath } from '../util/paths.js';
import type { NodeProto } from './proto.js';
import { describeNode, type Attributes } from './read.js';
import { numel, type ConstTensor } from './tensor.js';
import { degree, factorPerChannel, identityPoly, isIdentity, isScalar, MAX_DEGREE, type Poly } from './poly.js';

/**
 * How an ONNX tensor relates to the hepoly node output it stands for. ONNX per-sample dims are
 * `dims`; the hepoly output is `shape` (NHWC):
 * - `nchw`: dims [C, H, W], shape [H, W, C] (what Conv and pooling read);
 * - `nhwc`: dims = shape = [H, W, C] (a Keras input before its Transpose);
 * - `vec`:  shape [F], dims [F] or [F, 1, 1] / [1, 1, F] after a global pooling. `chw` is set when
 *   the ONNX elements are in (c, h, w) order of an [H, W, C] image (a Flatten of NCHW), which
 *   hepoly's (h, w, c) flatten differs from: constants and Gemm rows are permuted to match.
 */
export type View = 'nchw' | 'nhwc' | 'vec';

export interface TensorValue {
  kind: 'tensor';
  node: string;
  shape: number[];
  dims: number[];
  view: View;
  chw?: [number, number, number];
  /** element-wise polynomial still to apply to the node's output (null: none) */
  poly: Poly | null;
  /** whether nothing but this value reads the node's output, so weights may be folded into the node */
  exclusive: boolean;
}

export interface ConstValue {
  kind: 'const';
  t: ConstTensor;
}

export type Value = TensorValue | ConstValue;

/** One ONNX op's import: reads its inputs from the state, writes its output value. */
export type OpImporter = (s: ImportState, node: NodeProto, a: Attributes, opset: number) => void;

export interface ImportedActivation {
  name: string;
  kind: ActivationSpec['kind'];
  coeffs: number[];
  onnx_nodes: string[];
}

/** The graph under construction while the ONNX nodes are walked in order. */
export class ImportState {
  readonly nodes: GraphNode[] = [];
  readonly weights: WeightMap = new Map();
  readonly values = new Map<string, Value>();
  readonly activations: ImportedActivation[] = [];
  private readonly counts = new Map<string, number>();
  /** the ONNX input declares batch size 1 (no dynamic batch axis): Reshape targets may name it */
  batchFixed = false;

  constructor(
    readonly file: string,
    /** how many ONNX nodes (and graph outputs) read each value */
    readonly uses: Map<string, number>,
  ) {}

  fail(node: NodeProto, problem: string, fix: string): never {
    const sentence = fix.startsWith('hepoly') ? fix : fix.charAt(0).toUpperCase() + fix.slice(1);
    throw new HepolyError(`${shortPath(this.file)}: ${describeNode(node)}: ${problem}. ${sentence}`);
  }

  addNode(base: string, layer: LayerSpec, inputs: string[], params: Record<string, ConstTensor> = {}): string {
    const count = (this.counts.get(base) ?? 0) + 1;
    this.counts.set(base, count);
    const name = `${base}${count}`;
    this.nodes.push({ name, layer, inputs });
    for (const [param, t] of Object.entries(params)) this.weights.set(weightKey(name, param), { shape: t.dims, data: Float32Array.from(t.data) });
    return name;
  }

  value(node: NodeProto, i: number): Value {
    const name = node.input?.[i];
    const v = name ? this.values.get(name) : undefined;
    if (!v) this.fail(node, `its input ${i} ${name ? `'${name}' is not produced by an earlier node` : 'is missing'}`, 'Check that the graph is topologically sorted (onnx.checker.check_model)');
    return v;
  }

  tensor(node: NodeProto, i: number): TensorValue {
    const v = this.value(node, i);
    if (v.kind !== 'tensor') this.fail(node, `input ${i} is a constant where hepoly expects the data tensor`, 'hepoly imports networks whose data input flows through every layer');
    return v;
  }

  constant(node: NodeProto, i: number, what: string): ConstTensor {
    const v = this.value(node, i);
    if (v.kind !== 'const') this.fail(node, `its ${what} (input ${i}) is computed from the data, not a constant`, 'hepoly imports weights stored as initializers or Constant nodes');
    return v.t;
  }

  optionalConstant(node: NodeProto, i: number, what: string): ConstTensor | undefined {
    return node.input?.[i] ? this.constant(node, i, what) : undefined;
  }

  /** Whether every read of the inputs of `node` comes from `node` itself. */
  exclusiveInputs(node: NodeProto, inputs: TensorValue[]): boolean {
    if (!inputs.every((v) => v.exclusive)) return false;
    const own = new Map<string, number>();
    for (const n of node.input ?? []) own.set(n, (own.get(n) ?? 0) + 1);
    return [...own].every(([n, k]) => this.values.get(n)?.kind === 'const' || this.uses.get(n) === k);
  }

  setOutput(node: NodeProto, v: Value): void {
    const out = node.output?.[0];
    if (out) this.values.set(out, v);
  }

  channels(v: TensorValue): number {
    return v.shape[v.shape.length - 1];
  }

  /**
   * A constant's per-channel values in hepoly channel order (length C), or one value (length 1),
   * when it broadcasts over the tensor that way; anything varying over H or W is refused.
   */
  channelConst(node: NodeProto, v: TensorValue, c: ConstTensor): Float64Array {
    if (numel(c.dims) === 1) return Float64Array.of(c.data[0]);
    let dims = c.dims;
    if (dims.length === v.dims.length + 1 && dims[0] === 1) dims = dims.slice(1);
    const padded = [...new Array<number>(Math.max(0, v.dims.length - dims.length)).fill(1), ...dims];
    const axis = v.view === 'nchw' ? 0 : v.view === 'nhwc' ? 2 : v.dims.findIndex((d) => d === numel(v.dims));
    const ok = padded.length === v.dims.length && padded.every((d, i) => (i === axis ? d === v.dims[i] : d === 1));
    if (!ok) {
      this.fail(
        node,
        `its constant of shape [${c.dims.join(', ')}] does not broadcast as one value per channel over the tensor [${v.dims.join(', ')}]`,
        'hepoly folds constants that are scalars or per-channel (per-feature) vectors; constants varying over H or W have no hepoly layer',
      );
    }
    if (v.view !== 'vec' || !v.chw) return Float64Array.from(c.data);
    const [C, H, W] = v.chw;
    const out = new Float64Array(c.data.length);
    for (let ch = 0; ch < C; ch++) for (let h = 0; h < H; h++) for (let w = 0; w < W; w++) out[(h * W + w) * C + ch] = c.data[(ch * H + h) * W + w];
    return out;
  }

  /**
   * The hepoly node whose output is exactly this ONNX value: its pending polynomial becomes
   * weights folded into the producing dense/conv, a batchnorm, or an activation (+ batchnorm).
   */
  materialize(node: NodeProto, name: string): string {
    const v = this.values.get(name);
    if (!v || v.kind !== 'tensor') this.fail(node, `its input '${name}' is not a tensor`, 'hepoly imports networks whose data input flows through every layer');
    if (!v.poly || isIdentity(v.poly)) return v.node;
    const made = this.lowerPoly(node, v, v.poly);
    this.values.set(name, { ...v, node: made, poly: null, exclusive: false });
    return made;
  }

  private lowerPoly(node: NodeProto, v: TensorValue, p: Poly): string {
    const d = degree(p);
    const C = this.channels(v);
    if (d > MAX_DEGREE) this.fail(node, `the element-wise polynomial ending here has degree ${d}`, `hepoly's polynomial activations go up to degree ${MAX_DEGREE}`);
    if (d === 0) this.fail(node, 'the element-wise arithmetic ending here makes the tensor a constant', 'remove the dead branch from the model');
    const at = (c: Float64Array) => Float64Array.from({ length: C }, (_, i) => c[c.length === 1 ? 0 : i]);
    if (d === 1) return this.affine(v, at(p.coeffs[1]), at(p.coeffs[0]));
    if (isScalar(p)) return this.activation(v, p.coeffs.map((c) => c[0]), p.sources);
    const f = factorPerChannel(p, C);
    if (!f) {
      this.fail(
        node,
        `the polynomial ending here has per-channel coefficients that are not one activation times a per-channel scale`,
        'use scalar coefficients for the activation (a*x*x + b*x + c with scalar a, b, c), or put a BatchNormalization after it',
      );
    }
    const act = this.activation(v, f.q, p.sources);
    return this.affine({ ...v, node: act, exclusive: false }, f.scale, f.shift);
  }

  private activation(v: TensorValue, coeffs: number[], sources: string[]): string {
    const d = coeffs.length - 1;
    const spec: ActivationSpec =
      d === 2 && coeffs[0] === 0 && coeffs[1] === 0 && coeffs[2] === 1 ? { kind: 'square' } : d === 2 ? { kind: 'quad' } : { kind: 'poly', degree: d };
    const params: Record<string, ConstTensor> = spec.kind === 'square' ? {} : { coeffs: { dims: [coeffs.length], data: Float64Array.from(coeffs) } };
    const name = this.addNode('act', { op: 'activation', activation: spec }, [v.node], params);
    this.activations.push({ name, kind: spec.kind, coeffs, onnx_nodes: sources });
    return name;
  }

  /** y = scale * x + shift per channel: folded into the dense/conv that made x when only this reads it, else a batchnorm. */
  private affine(v: TensorValue, scale: Float64Array, shift: Float64Array): string {
    if (scale.every((s) => s === 1) && shift.every((t) => t === 0)) return v.node;
    const producer = this.nodes.find((n) => n.name === v.node);
    const absorbing = v.exclusive && producer ? opOf(producer).absorbsOutputAffine?.(producer.layer) : null;
    if (producer && absorbing) {
      this.foldInto(producer, absorbing, scale, shift);
      return producer.name;
    }
    const C = scale.length;
    const eps = 1e-3;
    return this.addNode('bn', { op: 'batchnorm', momentum: 0.9, epsilon: eps }, [v.node], {
      gamma: { dims: [C], data: scale },
      beta: { dims: [C], data: shift },
      moving_mean: { dims: [C], data: new Float64Array(C) },
      // (x - 0) / sqrt(var + eps) with var + eps = 1: the batchnorm is exactly scale * x + shift
      moving_variance: { dims: [C], data: new Float64Array(C).fill(1 - eps) },
    });
  }

  /** Scales the kernel's output units (its last axis) and the bias, switching the bias on when the shift needs one. */
  private foldInto(producer: GraphNode, withBias: LayerSpec, scale: Float64Array, shift: Float64Array): void {
    const kernel = this.weights.get(weightKey(producer.name, 'kernel'))!;
    const units = scale.length;
    for (let i = 0; i < kernel.data.length; i++) kernel.data[i] *= scale[i % units];
    const biasKey = weightKey(producer.name, 'bias');
    const old = this.weights.get(biasKey);
    if (!old && shift.every((t) => t === 0)) return;
    producer.layer = withBias;
    this.weights.set(biasKey, { shape: [units], data: Float32Array.from(old?.data ?? new Float32Array(units), (b, i) => b * scale[i] + shift[i]) });
  }

  /** The polynomial a value carries (identity when none). */
  polyOf(v: TensorValue): Poly {
    return v.poly ?? identityPoly();
  }
}
