/**
 * The network description shared by every interpreter: the tfjs trainer
 * (`models/tf-interpreter.ts`) and the CKKS evaluator (`he/`). A recipe's `model` section is
 * turned into a `Graph` once (`models/build.ts`); checkpoints store the graph and a flat map
 * of named weights, so both interpreters read exactly the same network.
 *
 * Conventions (the HE packing relies on them):
 * - per-sample tensors are NHWC without the batch axis: images `[H, W, C]`, vectors `[F]`;
 * - `flatten` is row-major over (h, w, c);
 * - dense kernel `[in, units]`, conv kernel `[k, k, cin, cout]` (HWIO), both `y = x*W + b`;
 * - polynomial coefficients are ascending: `y = c0 + c1 x + c2 x^2 + ...`.
 */

export type ActivationSpec =
  /** trainable a*x^2 + b*x + c (weights `coeffs` = [c, b, a]) */
  | { kind: 'quad' }
  /** trainable polynomial of the given degree (weights `coeffs`, degree+1 values) */
  | { kind: 'poly'; degree: number }
  /** fixed x^2, no weights */
  | { kind: 'square' }
  /** fixed polynomial fit of ReLU on `range` (weights `coeffs`, trainable if asked) */
  | { kind: 'relu-approx'; degree: number; range: [number, number]; trainable: boolean }
  /** not polynomial: baselines and teachers only, refused by the HE evaluator */
  | { kind: 'relu' }
  /** not polynomial (tanh approximation of x * Phi(x)): transformer baselines and teachers only */
  | { kind: 'gelu' };

export type LayerSpec =
  | { op: 'dense'; units: number; bias: boolean }
  | {
      op: 'conv2d';
      filters: number;
      kernel: number;
      stride: number;
      padding: 'same' | 'valid';
      bias: boolean;
      /** Dirac parameterization: effective kernel = W + alpha * identity (weights `alpha`, per output channel) */
      dirac?: boolean;
    }
  | { op: 'activation'; activation: ActivationSpec }
  | { op: 'avgpool'; size: number; stride: number }
  | { op: 'maxpool'; size: number; stride: number }
  | { op: 'global_avgpool' }
  | { op: 'batchnorm'; momentum: number; epsilon: number }
  | { op: 'flatten' }
  /** zero padding of H and W (e.g. 28x28 -> 32x32) */
  | { op: 'pad'; top: number; bottom: number; left: number; right: number }
  /** element-wise sum of all inputs (residual connections) */
  | { op: 'add' };

export type Op = LayerSpec['op'];

export interface GraphNode {
  name: string;
  layer: LayerSpec;
  /** names of the nodes feeding this one; `'input'` is the network input */
  inputs: string[];
}

export interface Graph {
  /** per-sample input shape, NHWC without batch */
  inputShape: number[];
  /** number of output classes (logits) */
  classes: number;
  /** topologically ordered */
  nodes: GraphNode[];
  /** name of the node whose output is the logits */
  output: string;
}

export const INPUT = 'input';

export interface WeightTensor {
  shape: number[];
  data: Float32Array;
}

/** weights keyed `${node}/${param}`, e.g. `conv1/kernel`, `act1/coeffs`, `bn1/moving_mean` */
export type WeightMap = Map<string, WeightTensor>;

export function weightKey(node: string, param: string): string {
  return `${node}/${param}`;
}

/** Number of polynomial coefficients an activation carries as weights (0 for fixed ones). */
export function activationCoeffCount(a: ActivationSpec): number {
  switch (a.kind) {
    case 'quad':
      return 3;
    case 'poly':
    case 'relu-approx':
      return a.degree + 1;
    case 'square':
    case 'relu':
    case 'gelu':
      return 0;
  }
}

/** Multiplicative depth of one activation under CKKS (levels consumed). */
export function activationDepth(a: ActivationSpec): number {
  switch (a.kind) {
    case 'quad':
    case 'square':
      return 1;
    case 'poly':
    case 'relu-approx':
      return Math.ceil(Math.log2(Math.max(2, a.degree)));
    case 'relu':
    case 'gelu':
      return Infinity;
  }
}

export function isPolynomial(layer: LayerSpec): boolean {
  const seq = layer as AnyLayerSpec;
  if (isSequenceOp(seq)) return false; // not yet compiled by the HE evaluator: see SequenceLayerSpec
  if (layer.op === 'maxpool') return false;
  if (layer.op === 'activation') return layer.activation.kind !== 'relu' && layer.activation.kind !== 'gelu';
  return true;
}

/** Output shape of every node, computed from the input shape and the layer specs. */
export function inferShapes(graph: Graph): Map<string, number[]> {
  const shapes = new Map<string, number[]>([[INPUT, graph.inputShape]]);
  for (const node of graph.nodes) {
    const ins = node.inputs.map((n) => {
      const s = shapes.get(n);
      if (!s) throw new Error(`graph: node ${node.name} reads ${n}, which is not defined before it`);
      return s;
    });
    shapes.set(node.name, outputShape(node, ins));
  }
  return shapes;
}

function outputShape(node: GraphNode, ins: number[][]): number[] {
  const x = ins[0];
  const seq = layerOf(node);
  if (isSequenceOp(seq)) return sequenceOutputShape(node.name, seq, ins);
  const L = node.layer;
  const need3 = () => {
    if (x.length !== 3) {
      throw new Error(`layer ${node.name} (${L.op}) needs an image input [H, W, C], got [${x.join(', ')}]`);
    }
  };
  switch (L.op) {
    case 'dense':
      if (x.length !== 1) {
        throw new Error(`layer ${node.name} (dense) needs a flat input, got [${x.join(', ')}]: add a flatten layer before it`);
      }
      return [L.units];
    case 'conv2d': {
      need3();
      const [h, w] = x;
      const oh = L.padding === 'same' ? Math.ceil(h / L.stride) : Math.floor((h - L.kernel) / L.stride) + 1;
      const ow = L.padding === 'same' ? Math.ceil(w / L.stride) : Math.floor((w - L.kernel) / L.stride) + 1;
      if (oh < 1 || ow < 1) throw new Error(`layer ${node.name} (conv2d): kernel ${L.kernel} does not fit input [${x.join(', ')}]`);
      return [oh, ow, L.filters];
    }
    case 'avgpool':
    case 'maxpool': {
      need3();
      const oh = Math.floor((x[0] - L.size) / L.stride) + 1;
      const ow = Math.floor((x[1] - L.size) / L.stride) + 1;
      if (oh < 1 || ow < 1) throw new Error(`layer ${node.name} (${L.op}): window ${L.size} does not fit input [${x.join(', ')}]`);
      return [oh, ow, x[2]];
    }
    case 'global_avgpool':
      need3();
      return [x[2]];
    case 'flatten':
      return [x.reduce((a, b) => a * b, 1)];
    case 'pad':
      need3();
      return [x[0] + L.top + L.bottom, x[1] + L.left + L.right, x[2]];
    case 'add':
      for (const s of ins) {
        if (s.join(',') !== x.join(',')) {
          throw new Error(`layer ${node.name} (add): inputs have different shapes [${ins.map((i) => i.join('x')).join('] vs [')}]`);
        }
      }
      return x;
    case 'activation':
    case 'batchnorm':
      return x;
  }
}

/** Shapes of the weights a node owns, keyed by param name. */
export function paramShapes(node: GraphNode, inShape: number[]): Record<string, number[]> {
  const seq = layerOf(node);
  if (isSequenceOp(seq)) return sequenceParamShapes(seq, inShape);
  const L = node.layer;
  switch (L.op) {
    case 'dense':
      return { kernel: [inShape[0], L.units], ...(L.bias ? { bias: [L.units] } : {}) };
    case 'conv2d':
      return {
        kernel: [L.kernel, L.kernel, inShape[2], L.filters],
        ...(L.bias ? { bias: [L.filters] } : {}),
        ...(L.dirac ? { alpha: [L.filters] } : {}),
      };
    case 'activation': {
      const n = activationCoeffCount(L.activation);
      return n > 0 ? { coeffs: [n] } : {};
    }
    case 'batchnorm': {
      const c = inShape[inShape.length - 1];
      return { gamma: [c], beta: [c], moving_mean: [c], moving_variance: [c] };
    }
    default:
      return {};
  }
}

/** Parameters that the optimizer does not update. */
export function isTrainableParam(node: GraphNode, param: string): boolean {
  if (isSequenceOp(layerOf(node))) return true;
  if (node.layer.op === 'batchnorm') return param === 'gamma' || param === 'beta';
  if (node.layer.op === 'activation' && node.layer.activation.kind === 'relu-approx') return node.layer.activation.trainable;
  return true;
}

export function countParams(graph: Graph): number {
  const shapes = inferShapes(graph);
  let n = 0;
  for (const node of graph.nodes) {
    const ps = paramShapes(node, shapes.get(node.inputs[0])!);
    for (const s of Object.values(ps)) n += s.reduce((a, b) => a * b, 1);
  }
  return n;
}

// ---------------------------------------------------------------------------------------------
// Sequence (transformer) ops
//
// Per-sample sequence tensors are [T, F]: T tokens of F features, token-major (row-major), so
// a batch is [N, T, F]. Text inputs are [T] character ids (float-coded integers).
//
// These ops are kept out of `LayerSpec` (the union the HE compiler switches over exhaustively)
// until the HE evaluator dispatches them: a node holding one is built with `sequenceNode` and
// read back with `layerOf`. `isPolynomial` reports them as not (yet) HE-evaluable, so the HE
// compiler refuses a transformer graph with a clear message instead of reaching its switch.

/** How attention weights are normalized. */
export type AttentionSpec =
  /** y = s^p / (eps + sum s^p), p even (layers/power-softmax.ts) */
  | { kind: 'power-softmax'; p: number; eps: number }
  /** exp(s - max) / sum: the non-polynomial baseline */
  | { kind: 'softmax' };

export type SequenceLayerSpec =
  /** [H, W, C] -> [(H/size)(W/size), size*size*C]: non-overlapping patches, row-major, each flattened (h, w, c) */
  | { op: 'patchify'; size: number }
  /** [T] ids -> [T, dim]; weights `table` [vocab, dim] (under HE: a dense layer on one-hot inputs) */
  | { op: 'embedding'; vocab: number; dim: number }
  /** [T, D] + learned positions; weights `table` [T, D] */
  | { op: 'pos_embedding' }
  /** the same dense layer on every token: [T, F] -> [T, units]; weights `kernel` [F, units], `bias` */
  | { op: 'token_dense'; units: number; bias: boolean }
  /**
   * multi-head self-attention, pre-projections included: [T, D] -> [T, D]. Weights
   * `qkv_kernel` [D, 3D] (q | k | v), `qkv_bias` [3D], `out_kernel` [D, D], `out_bias` [D].
   * scores = q k^T / sqrt(D / heads) per head, normalized by `attention`, times v.
   */
  | { op: 'attention'; heads: number; attention: AttentionSpec }
  /**
   * normalization of each token over its features; weights `gamma`, `beta` [D]. `poly`: the
   * inverse square root is a Newton polynomial fitted to the variance range (layers/norm.ts)
   */
  | { op: 'layernorm'; epsilon: number; poly: { range: [number, number]; iterations: number } | null }
  /** [T, D] -> [D]: the mean over tokens, or the last token (language models) */
  | { op: 'seq_pool'; mode: 'mean' | 'last' };

export type AnyLayerSpec = LayerSpec | SequenceLayerSpec;

const SEQUENCE_OPS = new Set<string>(['patchify', 'embedding', 'pos_embedding', 'token_dense', 'attention', 'layernorm', 'seq_pool']);

export function isSequenceOp(layer: AnyLayerSpec): layer is SequenceLayerSpec {
  return SEQUENCE_OPS.has(layer.op);
}

/** A node's layer, including the sequence ops. */
export function layerOf(node: GraphNode): AnyLayerSpec {
  return node.layer;
}

/** A graph node holding a sequence op (see the note above on why it is not in `LayerSpec`). */
export function sequenceNode(name: string, layer: SequenceLayerSpec, inputs: string[]): GraphNode {
  return { name, layer: layer as unknown as LayerSpec, inputs };
}

function sequenceOutputShape(name: string, L: SequenceLayerSpec, ins: number[][]): number[] {
  const x = ins[0];
  const need = (rank: number, what: string) => {
    if (x.length !== rank) throw new Error(`layer ${name} (${L.op}) needs ${what}, got [${x.join(', ')}]`);
  };
  switch (L.op) {
    case 'patchify': {
      need(3, 'an image input [H, W, C]');
      if (x[0] % L.size !== 0 || x[1] % L.size !== 0) {
        throw new Error(`layer ${name} (patchify): patch ${L.size} does not tile the ${x[0]}x${x[1]} image (H and W must be multiples of it)`);
      }
      return [(x[0] / L.size) * (x[1] / L.size), L.size * L.size * x[2]];
    }
    case 'embedding':
      need(1, 'a sequence of token ids [T]');
      return [x[0], L.dim];
    case 'pos_embedding':
    case 'attention':
    case 'layernorm':
      need(2, 'a token sequence [T, D]');
      if (L.op === 'attention' && x[1] % L.heads !== 0) {
        throw new Error(`layer ${name} (attention): width ${x[1]} is not divisible by ${L.heads} heads`);
      }
      return x;
    case 'token_dense':
      need(2, 'a token sequence [T, F]');
      return [x[0], L.units];
    case 'seq_pool':
      need(2, 'a token sequence [T, D]');
      return [x[1]];
  }
}

function sequenceParamShapes(L: SequenceLayerSpec, x: number[]): Record<string, number[]> {
  switch (L.op) {
    case 'embedding':
      return { table: [L.vocab, L.dim] };
    case 'pos_embedding':
      return { table: [x[0], x[1]] };
    case 'token_dense':
      return { kernel: [x[1], L.units], ...(L.bias ? { bias: [L.units] } : {}) };
    case 'attention':
      return { qkv_kernel: [x[1], 3 * x[1]], qkv_bias: [3 * x[1]], out_kernel: [x[1], x[1]], out_bias: [x[1]] };
    case 'layernorm':
      return { gamma: [x[1]], beta: [x[1]] };
    default:
      return {};
  }
}

/**
 * Whether a sequence op is made of additions and multiplications only (given the reciprocal
 * approximations of layers/reciprocal.ts): power-softmax attention and poly-layernorm are,
 * softmax attention and exact layernorm are not.
 */
export function isPolynomialSequenceOp(L: SequenceLayerSpec): boolean {
  if (L.op === 'attention') return L.attention.kind === 'power-softmax';
  if (L.op === 'layernorm') return L.poly !== null;
  return true;
}
