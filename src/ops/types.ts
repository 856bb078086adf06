import type * as tf from '@tensorflow/tfjs-core';
import type { z } from 'zod';
import type { ActivationSpec, GraphNode, LayerSpec, Op, WeightMap } from '../models/graph.js';
import type { StructOp, WeightedOp } from '../he/program.js';
import type { OnnxFace } from './onnx-face.js';

/**
 * The faces of one op: everything hepoly knows about a layer kind, in one object per op
 * (the tfjs-kernel pattern: one config per op, collected in `ops/index.ts`). The graph
 * utilities, the summary, both interpreters, the HE compiler and pruning look an op up here
 * and never switch on op names.
 */

/** The packings of src/he/packing and src/he/tiles, as the ops table names them. */
export const PACKING_KINDS = ['batch', 'sample', 'stacked', 'interleaved', 'token'] as const;
export type PackingKind = (typeof PACKING_KINDS)[number];

/** `true`, or why that packing cannot run the op. */
export type Support = true | string;

/** How an initial weight is drawn (all in plain JS, from a seeded stream: same on every backend). */
export type ParamInit =
  | { kind: 'zeros' }
  | { kind: 'ones' }
  | { kind: 'values'; values: Float32Array }
  /** uniform in [-limit, limit], drawn from the stream `init:<node>/<param>` (Glorot: see ops/shared.ts) */
  | { kind: 'uniform'; limit: number };

export interface ParamDef {
  shape: number[];
  init: ParamInit;
  /** false: the optimizer leaves it alone (batchnorm's moving statistics, a fixed ReLU fit) */
  trainable: boolean;
}

export interface TfForwardContext<L extends LayerSpec> {
  layer: L;
  node: string;
  /** batches: [N, ...per-sample shape] */
  ins: tf.Tensor[];
  w(param: string): tf.Tensor;
  training: boolean;
  /** records a value whose range the HE evaluator needs (no-op unless ranges are recorded) */
  probe(what: string, t: tf.Tensor): void;
  /** a batchnorm's batch statistics (training mode), for the moving averages */
  batchStats(mean: tf.Tensor, variance: tf.Tensor): void;
}

export interface ReferenceContext<L extends LayerSpec> {
  layer: L;
  node: string;
  /** one sample each, flat NHWC */
  ins: Float64Array[];
  inShapes: number[][];
  w(param: string): ArrayLike<number>;
}

/**
 * What the HE compiler offers an op's lowering (src/he/compile.ts): values are affine
 * expressions over ciphertext tensors, opaque to the op; each call appends to the program.
 */
export interface HeValue {
  readonly shape: number[];
}

export interface LowerOps {
  /** y = x * W + bias: one plaintext product (one level) when it is materialized */
  weighted(x: HeValue, op: WeightedOp, bias: Float64Array | null): HeValue;
  /** sum_k c_k x^k, ascending coefficients (power tree; coefficients fold into the next layer) */
  polynomial(x: HeValue, coeffs: Float64Array): HeValue;
  /** additions and relabelings only (pooling sums, padding, flatten) */
  struct(x: HeValue, op: StructOp): HeValue;
  /** y = factors * x + shift, element-wise: folds into a neighbouring linear layer */
  affine(x: HeValue, factors: Float64Array, shift: Float64Array): HeValue;
  /** element-wise sum of same-shaped values */
  sum(xs: HeValue[]): HeValue;
  /**
   * out[o] = sum over pairs of o of +-a[i] b[j] (+ plus.factors * plus.x) + bias: ciphertext
   * products summed before one rescale, one level (attention, Newton steps; batch packing).
   * `role` names the product in the output's label (`NODE ROLE`, default `products`): the
   * latency breakdown of a pass groups its time by it
   */
  product(a: HeValue, b: HeValue, pairs: ProductPairs, outShape: number[], extra?: { plus?: { x: HeValue; factors: Float64Array }; bias?: Float64Array; role?: string }): HeValue;
  /** the program's input as one-hot rows of `vocab` (token ids -> [T, vocab]); only on the input itself */
  oneHotInput(x: HeValue, vocab: number): HeValue;
}

/** The products of `LowerOps.product`: entry k adds sign[k] * a[a[k]] * b[b[k]] to out[out[k]]. */
export interface ProductPairs {
  out: Int32Array;
  a: Int32Array;
  b: Int32Array;
  sign: Int8Array | null;
}

export interface LowerContext<L extends LayerSpec> {
  layer: L;
  node: string;
  ins: HeValue[];
  inShapes: number[][];
  w(param: string): Float64Array;
  he: LowerOps;
  /** ranges.json, when the checkpoint has one (power-softmax fits its reciprocal to a recorded range) */
  ranges: LevelContext['ranges'];
}

export interface LevelContext {
  node: string;
  /** ranges.json: some ops' cost depends on a recorded range (power-softmax's reciprocal) */
  ranges: { activations: Record<string, { min: number; max: number }> } | null;
}

/**
 * What pruning may do with the op (src/train/prune-units.ts):
 * - `units`: its outputs are units (neurons, channels) that may be removed; `kernelInputAxis`
 *   is the axis of its kernel that reads the previous layer's units;
 * - `passes`: works per unit, so units pass through; `params` follow the units;
 *   `flattens`: consumer row r belongs to unit r % channels;
 * - `mixes`: combines units, so units before it cannot be removed independently.
 */
export type Prunable<L extends LayerSpec> =
  | {
      role: 'units';
      units(layer: L): number;
      withUnits(layer: L, units: number): L;
      kernelInputAxis: number;
      /** why this layer's units cannot be pruned (null: they can) */
      refuse(layer: L): string | null;
    }
  | { role: 'passes'; params: string[]; flattens?: boolean }
  | { role: 'mixes' };

export interface OpDef<L extends LayerSpec = LayerSpec> {
  name: L['op'];
  /** the op-family file it lives in (src/ops/<family>.ts), for the ops table */
  family: string;
  /** linear: owns the plaintext products it is lowered to (the level budget names it) */
  kind: 'linear' | 'activation' | 'normalization' | 'pooling' | 'structure' | 'sequence';
  /** one line for `hepoly ops` and docs/ops.md */
  doc: string;
  /** the layer's attributes as stored in graph JSON (checkpoints), `op` excluded */
  attributes: z.ZodType;
  /** short detail for summaries, e.g. `8x3x3 s1 same` */
  describe(layer: L): string;
  /** per-sample output shape; throws an Error saying what does not fit */
  outputShape(layer: L, ins: number[][], node: string): number[];
  params(layer: L, inShape: number[]): Record<string, ParamDef>;
  tfjsForward(ctx: TfForwardContext<L>): tf.Tensor;
  /** float64, one sample: per-layer expected values of the HE checks */
  referenceForward: (ctx: ReferenceContext<L>) => Float64Array;
  /** lowering to the program IR of src/he/program.ts */
  lowerHE: (ctx: LowerContext<L>) => HeValue;
  /** CKKS levels the op consumes on its path, as the compiler spends them; null: unknown until ranges are recorded */
  levelCost(layer: L, ctx: LevelContext): number | null;
  /** true, or why CKKS cannot evaluate it (not additions and multiplications only) */
  polynomial(layer: L): Support;
  /** values whose range ranges.json records: 'input' (the op's input, keyed by node) or an internal value (keyed node/what) */
  rangeProbes(layer: L): string[];
  /**
   * a loss term of the layer's own, on a value it probes (`probed(what)`, recorded in
   * training), that keeps it where its HE lowering is cheap; null: none for this layer
   */
  trainingPenalty?(layer: L): ((probed: (what: string) => tf.Tensor) => tf.Scalar) | null;
  /** how the op disappears into a neighbour at inference (null: it is its own HE step) */
  foldsInto: string | null;
  prunable: Prunable<L>;
  /** which packings run it */
  packings(layer: L): Record<PackingKind, Support>;
  /** representative layers with input shapes: rows of the ops table, cases of the registry's self-test */
  examples: { layer: L; ins: number[][] }[];
  /**
   * how cnn recipes write it (absent: recipes do not name the op directly); the recipe config
   * type is each op's own, so the registry holds it as `any` and the schema checks it first
   */
  recipe?: RecipeFace<L, any>;
  /**
   * a layer whose training forward reports batch statistics (`TfForwardContext.batchStats`):
   * the trainer folds them into these (non-trainable) parameters at the layer's momentum
   */
  movingStatistics?: { mean: string; variance: string; momentum(layer: L): number };
  /**
   * a per-unit `y * scale + shift` after the layer can be absorbed into its weights: the last
   * axis of its `kernel` runs over output units and its `bias` adds per unit. Returns the layer
   * with its bias switched on, or null when this one cannot absorb it (a Dirac conv). The ONNX
   * importer folds a following Mul/Add or BatchNormalization this way
   */
  absorbsOutputAffine?(layer: L): L | null;
  /** the input interval the op's polynomial was fitted on (a ReLU fit's range) and what reports call it, shown against the recorded range */
  fitInterval?(layer: L): { range: [number, number]; label: string } | null;
  /** rewrites a training-time parameterization into the plain layer inference needs (Dirac convs) */
  inferenceFold?(node: GraphNode & { layer: L }, weights: WeightMap): { layer: L; weights: WeightMap } | null;
  /** how `hepoly export --format onnx` writes it (absent: the export refuses the layer by name) */
  onnx?: OnnxFace<L>;
}

/** What a recipe layer is turned into a graph layer with (src/models/cnn.ts). */
export interface RecipeContext {
  /** per-sample shape reaching the layer */
  inShape: number[];
  /** the last layer is the classifier */
  isLast: boolean;
  classes: number;
  /** the model's `activation`, for layers that do not name theirs */
  activation: ActivationSpec;
  /** `<recipe>: model.layers[i].<field>`, for messages */
  at(field: string): string;
}

/** How a cnn recipe names the op: `{type: <type>, ...}` (its zod schema, with the defaults). */
export interface RecipeFace<L extends LayerSpec, C> {
  type: string;
  schema: z.ZodType<C>;
  /** graph node names: `${nodeName}1`, `${nodeName}2`, ... */
  nodeName: string;
  /** reads a vector: after an image the builder inserts a flatten first (as Keras users write by hand) */
  flatInput?: boolean;
  toLayer(cfg: C, ctx: RecipeContext): L;
  /**
   * The inverse: the recipe layer (as YAML writes it) that gives back `layer`, for the `model:`
   * section of an imported network (src/onnx/model-section.ts; the rebuilt graph is checked);
   * absent: such networks get a stand-in section
   */
  fromLayer?(layer: L, ctx: { isLast: boolean; outShape: number[] }): Record<string, unknown>;
}

/** The op definition for one `op` name, with its layer type narrowed. */
export type OpDefOf<K extends Op> = OpDef<Extract<LayerSpec, { op: K }>>;
