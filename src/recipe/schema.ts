import { z } from 'zod';
import { ActivationSchema } from '../ops/activation-schema.js';
import { CnnLayerSchema } from '../ops/recipe-layers.js';
import { FederatedSchema } from '../federated/schema.js';

/**
 * The recipe schema: the one place that says which keys a recipe may have, their types and
 * defaults. `recipe/load.ts` parses YAML through it once; everything downstream trusts the
 * resulting `Recipe` type. Objects are strict so a typo is an error, not a silent default.
 */

const posInt = z.number().int().positive();
const fraction = z.number().min(0).max(1);

export { ActivationSchema };

const FilePair = z.strictObject({ images: z.string(), labels: z.string() });

const Normalize = z.union([
  z.enum(['standard', 'minmax', 'none']),
  z.strictObject({ scale: z.number(), shift: z.number().default(0) }),
]);

const Split = z.strictObject({ validation: fraction.default(0.2) });

const CsvData = z.strictObject({
  source: z.literal('csv'),
  path: z.string(),
  label: z.string(),
  /** feature columns to use, in order; default: every column but the label */
  features: z.array(z.string()).min(1).optional(),
  /** reshape each row's features into an image [H, W, C] (for a CNN on CSV data) */
  shape: z.array(posInt).min(1).max(3).optional(),
  normalize: Normalize.default('standard'),
  split: Split.default({ validation: 0.2 }),
  limit: posInt.optional(),
});

const IdxData = z.strictObject({
  source: z.literal('idx'),
  train: FilePair,
  test: FilePair.optional(),
  /** default: bytes scaled to [0, 1] */
  normalize: Normalize.default({ scale: 1 / 255, shift: 0 }),
  split: Split.default({ validation: 0.1 }),
  limit: posInt.optional(),
  /** optional cap on test samples (for quick runs) */
  test_limit: posInt.optional(),
});

export const DataSchema = z.discriminatedUnion('source', [CsvData, IdxData]);

/**
 * A character-level language-modelling text: every window of `context` characters is a sample
 * whose class is the character that follows it (so the classification loop trains it). The
 * text is split into contiguous parts, train first, then validation, then test.
 */
const TextData = z.strictObject({
  source: z.literal('text'),
  path: z.string(),
  /** characters per sample (the model's context) */
  context: posInt.max(1024),
  /** the vocabulary, as one string of distinct characters; default: every character of the text */
  vocab: z.string().min(2).optional(),
  /** characters between the starts of consecutive training windows (validation and test use every window) */
  stride: posInt.default(1),
  split: z.strictObject({ validation: fraction.default(0.05), test: fraction.default(0.05) }).default({ validation: 0.05, test: 0.05 }),
  /** optional cap on training samples */
  limit: posInt.optional(),
  /** optional cap on validation and test samples each */
  test_limit: posInt.optional(),
});

/** Every data source a recipe may name (the tabular/image loaders take `DataSchema`, text its own). */
export const AnyDataSchema = z.discriminatedUnion('source', [CsvData, IdxData, TextData]);

/** the layers of a cnn model: each op's recipe face (src/ops/recipe-layers.ts) */
export { CnnLayerSchema };

const MlpModel = z.strictObject({
  kind: z.literal('mlp'),
  hidden: z.array(posInt).default([32]),
  activation: ActivationSchema.default({ kind: 'quad' }),
  batchnorm: z.boolean().default(false),
});

const CnnModel = z.strictObject({
  kind: z.literal('cnn'),
  layers: z.array(CnnLayerSchema).min(1),
  activation: ActivationSchema.default({ kind: 'quad' }),
});

const ResnetModel = z.strictObject({
  kind: z.literal('resnet'),
  /** 6n+2 layers with weights: n basic blocks per stage (20 -> 3 blocks per stage) */
  depth: z
    .number()
    .int()
    .refine((d) => d >= 8 && (d - 2) % 6 === 0, 'expected 6n+2 (8, 14, 20, 32, ...)')
    .default(20),
  /** channels of the stem and of the three stages */
  widths: z.array(posInt).length(3).default([16, 32, 64]),
  /**
   * standard: identity / 1x1-projection shortcut per block; dirac: no shortcut, each 3x3 conv
   * is (alpha*I + W) (one conv after folding); shared-source: every block of a stage adds the
   * same source (the stage input), so fewer distinct values must be level-aligned under HE
   */
  skip: z.enum(['standard', 'dirac', 'shared-source']).default('standard'),
  /**
   * batchnorm after each residual add, before the activation: without it a polynomial on the
   * residual stream compounds block after block (a ResNet-20 of quads overflows at init)
   */
  post_add_bn: z.boolean().default(true),
  activation: ActivationSchema.default({ kind: 'quad' }),
  /** zero-pad the input image to this height and width (e.g. 28 -> 32) */
  pad_to: posInt.optional(),
});

const Attention = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('power-softmax'),
    /** x^p / sum x^p: p must be even so every term is >= 0 without max-subtraction */
    p: z
      .number()
      .int()
      .refine((p) => p >= 2 && p % 2 === 0, 'p must be an even integer >= 2 (2, 4, 6, ...): x^p / sum x^p needs x^p >= 0, which an odd p does not give')
      .default(2),
    /** added to the denominator sum x^p (keeps an all-zero row finite) */
    eps: z.number().min(0).default(1e-3),
    /**
     * train the denominators into [lo, hi]: a penalty weight x mean of the squared log-excess.
     * The encrypted division's iterations (CKKS levels) grow with the ratio of the largest
     * recorded denominator to the smallest, so a narrow range costs fewer client refreshes
     */
    denominator: z
      .strictObject({
        range: z
          .tuple([z.number().positive(), z.number().positive()])
          .refine(([lo, hi]) => lo < hi, 'expected [lo, hi] with 0 < lo < hi, e.g. [1, 100]'),
        weight: z.number().min(0).default(0.01),
      })
      .optional(),
  }),
  z.strictObject({ kind: z.literal('softmax') }),
]);

const Norm = z.union([
  z.enum(['layernorm', 'batchnorm', 'poly-layernorm']),
  z.strictObject({
    kind: z.literal('poly-layernorm'),
    /** variance range the Newton inverse square root is fitted to */
    range: z
      .tuple([z.number().positive(), z.number().positive()])
      .refine(([lo, hi]) => lo < hi, 'expected [lo, hi] with 0 < lo < hi')
      .default([0.1, 10]),
    /** Newton iterations of the inverse square root (2 CKKS levels each) */
    iterations: z.number().int().min(0).max(12).default(5),
  }),
  z.strictObject({ kind: z.literal('layernorm'), epsilon: z.number().positive().default(1e-5) }),
  z.strictObject({
    kind: z.literal('batchnorm'),
    momentum: z.number().min(0).max(1).default(0.9),
    epsilon: z.number().positive().default(1e-3),
  }),
]);

const TransformerModel = z.strictObject({
  kind: z.literal('transformer'),
  /** classify: images -> class (ViT); lm: text window -> next character */
  task: z.enum(['classify', 'lm']).default('classify'),
  layers: posInt.max(24).default(2),
  dim: posInt.default(64),
  heads: posInt.default(4),
  /** hidden width of each block's MLP, in multiples of dim */
  mlp_ratio: z.number().positive().default(2),
  /** classify: square patch size in pixels (7 on 28x28 -> 16 tokens) */
  patch: posInt.optional(),
  /** lm: characters of context (default: data.context; must equal it) */
  context: posInt.optional(),
  /** lm: vocabulary size (default: the data's; must equal it) */
  vocab: posInt.optional(),
  attention: Attention.default({ kind: 'power-softmax', p: 2, eps: 1e-3 }),
  norm: Norm.default('batchnorm'),
  activation: ActivationSchema.default({ kind: 'quad' }),
  /** a normalization before the classifier head */
  final_norm: z.boolean().default(true),
});

export const ModelSchema = z.discriminatedUnion('kind', [MlpModel, CnnModel, ResnetModel, TransformerModel]);

const Optimizer = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('adam'), lr: z.number().positive().default(1e-3), beta1: fraction.default(0.9), beta2: fraction.default(0.999) }),
  z.strictObject({ kind: z.literal('sgd'), lr: z.number().positive().default(1e-2), momentum: fraction.default(0.9) }),
]);

const Schedule = z.union([
  z.enum(['constant', 'cosine', 'step']),
  z.strictObject({ kind: z.literal('step'), every: posInt.default(10), gamma: z.number().positive().max(1).default(0.1) }),
  z.strictObject({ kind: z.literal('cosine'), min_lr: z.number().min(0).default(0) }),
]);

export const TrainSchema = z.strictObject({
  epochs: posInt.default(10),
  batch: posInt.default(32),
  optimizer: Optimizer.default({ kind: 'adam', lr: 1e-3, beta1: 0.9, beta2: 0.999 }),
  schedule: Schedule.default('constant'),
  /** global gradient-norm clipping; null: none */
  clip: z.number().positive().nullable().default(null),
  /** a batch loss above this counts as exploding and stops the run */
  max_loss: z.number().positive().default(1e4),
  /** stop when validation accuracy has not improved for this many epochs */
  early_stopping: z.strictObject({ patience: posInt }).optional(),
});

export const DistillSchema = z.strictObject({
  /** a hepoly checkpoint directory (any activation) or an .onnx file */
  teacher: z.string(),
  temperature: z.number().positive().default(4),
  /** weight of the distillation term; 1 - alpha goes to the hard-label loss */
  alpha: fraction.default(0.7),
  /** ONNX teachers: input layout (default: read from the model's input shape) */
  teacher_layout: z.enum(['nchw', 'nhwc']).optional(),
});

export const RangeSchema = z.strictObject({
  /** activation inputs should stay inside [-bound, bound] */
  bound: z.number().positive(),
  /** weight of the penalty mean(relu(|x| - bound)^2), summed over activation layers */
  weight: z.number().min(0).default(0.01),
});

/** HE-aware pruning after training (src/train/prune.ts); also `hepoly prune CHECKPOINT` */
export const PruneSchema = z.strictObject({
  /** what the pruning should remove: whole ciphertexts (pruned units fill whole tiles) */
  target: z.enum(['ciphertexts']).default('ciphertexts'),
  /** fraction of weights (magnitude) or of hidden units (HE-PEx) to remove */
  sparsity: z.number().min(0).lt(1, 'sparsity must be below 1 (1 would remove every weight)'),
  /** HE-PEx: reorder units so the pruned ones fill whole tiles; false: plain magnitude pruning */
  permute: z.boolean().default(true),
  /** HE-PEx expansion: weights inside surviving tiles are restored, then fine-tuned with the mask fixed */
  expand: z.boolean().default(true),
  /** units per tile (a ciphertext's worth of neurons/channels); pruned units come in whole tiles */
  tile: posInt.default(1),
  /** fine-tuning epochs after pruning (mask held fixed) */
  epochs: z.number().int().min(0).default(3),
});

export const RecipeSchema = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9._-]+$/, 'letters, digits, ".", "_" or "-" (it names the checkpoint folder)'),
  description: z.string().optional(),
  seed: z.number().int().min(0).default(42),
  data: AnyDataSchema,
  model: ModelSchema,
  train: TrainSchema.default(TrainSchema.parse({})),
  /** knowledge distillation from a pretrained teacher */
  distill: DistillSchema.optional(),
  /** range-aware training: penalize activation inputs outside [-bound, bound] */
  range: RangeSchema.optional(),
  /** start from the weights of a compatible checkpoint (same layer names and shapes) */
  init_from: z.string().optional(),
  /** prune after training (HE-PEx or magnitude), then fine-tune with the mask fixed */
  prune: PruneSchema.optional(),
  /** federated training across parties (hepoly federate RECIPE; docs/federated.md) */
  federated: FederatedSchema.optional(),
});

export type Recipe = z.infer<typeof RecipeSchema>;
export type DataConfig = z.infer<typeof DataSchema>;
export type CsvDataConfig = z.infer<typeof CsvData>;
export type IdxDataConfig = z.infer<typeof IdxData>;
export type TextDataConfig = z.infer<typeof TextData>;
export type AnyDataConfig = z.infer<typeof AnyDataSchema>;
export type TransformerConfig = z.infer<typeof TransformerModel>;
export type NormalizeConfig = z.infer<typeof Normalize>;
export type ModelConfig = z.infer<typeof ModelSchema>;
export type CnnLayerConfig = z.infer<typeof CnnLayerSchema>;
export type TrainConfig = z.infer<typeof TrainSchema>;
export type DistillConfig = z.infer<typeof DistillSchema>;
export type RangeConfig = z.infer<typeof RangeSchema>;
export type PruneConfig = z.infer<typeof PruneSchema>;
export type ActivationConfig = z.infer<typeof ActivationSchema>;
