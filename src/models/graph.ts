/**
 * The network description shared by every interpreter: the tfjs trainer
 * (`models/tf-interpreter.ts`) and the CKKS evaluator (`he/`). A recipe's `model` section is
 * turned into a `Graph` once (`models/build.ts`); checkpoints store the graph and a flat map
 * of named weights, so both interpreters read exactly the same network.
 * What each layer kind does (shapes, weights, forwards, HE lowering, level cost, pruning) is its
 * op definition in `src/ops/` (the registry); this file holds the types and the loops over them.
 *
 * Conventions (the HE packing relies on them):
 * - per-sample tensors are NHWC without the batch axis: images `[H, W, C]`, vectors `[F]`;
 * - `flatten` is row-major over (h, w, c);
 * - dense kernel `[in, units]`, conv kernel `[k, k, cin, cout]` (HWIO), both `y = x*W + b`;
 * - polynomial coefficients are ascending: `y = c0 + c1 x + c2 x^2 + ...`.
 */
import { getOp } from '../ops/registry.js';
import type { ParamDef } from '../ops/types.js';
import '../ops/index.js';

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

/** The layers of the image and vector networks (MLP, CNN, ResNet). */
export type PlainLayerSpec =
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
      /**
       * grouped convolution: input and output channels split into `groups` blocks, block g of
       * the outputs reads block g of the inputs only (kernel [k, k, cin/groups, filters]);
       * groups = cin = filters is depthwise. Absent: 1 (checkpoints before groups existed).
       */
      groups?: number;
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

/** Every layer a graph node may hold (the op registry, src/ops/, has one definition per `op`). */
export type LayerSpec = PlainLayerSpec | SequenceLayerSpec;

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

export { weightKey } from './weight-key.js';

export { activationCoeffCount, activationDepth } from '../ops/activation.js';

/** Whether the HE compiler (src/he/compile.ts) can evaluate the layer: its op is a polynomial. */
export function isPolynomial(layer: LayerSpec): boolean {
  return getOp(layer.op).polynomial(layer) === true;
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
    shapes.set(node.name, getOp(node.layer.op).outputShape(node.layer, ins, node.name));
  }
  return shapes;
}

/** The weights a node owns: shapes, initializers, trainable or not. */
export function paramDefs(node: GraphNode, inShape: number[]): Record<string, ParamDef> {
  return getOp(node.layer.op).params(node.layer, inShape);
}

/** Shapes of the weights a node owns, keyed by param name. */
export function paramShapes(node: GraphNode, inShape: number[]): Record<string, number[]> {
  return Object.fromEntries(Object.entries(paramDefs(node, inShape)).map(([k, d]) => [k, d.shape]));
}

/** Parameters that the optimizer does not update (the input shape does not change which). */
export function isTrainableParam(node: GraphNode, param: string, inShape?: number[]): boolean {
  // which params are trainable does not depend on sizes: any shape of rank 3 will do
  return paramDefs(node, inShape ?? [1, 1, 1])[param]?.trainable ?? true;
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

/**
 * Where training keeps power-softmax's denominators: the encrypted division's iterations grow
 * with the ratio of the largest to the smallest denominator it must serve.
 */
export interface DenominatorRange {
  range: [number, number];
  weight: number;
}

/** How attention weights are normalized. */
export type AttentionSpec =
  /** y = s^p / (eps + sum s^p), p even (layers/power-softmax.ts) */
  | { kind: 'power-softmax'; p: number; eps: number; denominator?: DenominatorRange }
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

export type AnyLayerSpec = LayerSpec;

/** A transformer layer (its HE lowering is in src/ops/sequence-he.ts). */
export function isSequenceOp(layer: LayerSpec): layer is SequenceLayerSpec {
  return getOp(layer.op).kind === 'sequence';
}

/** Whether a graph holds sequence ops (a transformer: batch packing only). */
export function isSequenceGraph(graph: Graph): boolean {
  return graph.nodes.some((n) => isSequenceOp(layerOf(n)));
}

/** A node's layer (kept for callers written when sequence ops sat outside `LayerSpec`). */
export function layerOf(node: GraphNode): LayerSpec {
  return node.layer;
}

/** A graph node holding a sequence op. */
export function sequenceNode(name: string, layer: SequenceLayerSpec, inputs: string[]): GraphNode {
  return { name, layer, inputs };
}

/**
 * Whether a sequence op is made of additions and multiplications only (given the reciprocal
 * approximations of layers/reciprocal.ts): power-softmax attention and poly-layernorm are,
 * softmax attention and exact layernorm are not.
 */
export function isPolynomialSequenceOp(L: SequenceLayerSpec): boolean {
  return getOp(L.op).polynomial(L) === true;
}
