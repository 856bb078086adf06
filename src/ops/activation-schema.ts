import { z } from 'zod';

/**
 * The activations a recipe or a graph may name (the recipe's `activation` keys and the
 * activation op's attributes). Plain zod, no tfjs: src/recipe/schema.ts re-exports it.
 */
export const ActivationSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('quad') }),
  z.strictObject({ kind: z.literal('poly'), degree: z.number().int().min(1).max(8) }),
  z.strictObject({ kind: z.literal('square') }),
  z.strictObject({ kind: z.literal('relu') }),
  /** not polynomial: the baseline of transformers (softmax twins) and teachers only */
  z.strictObject({ kind: z.literal('gelu') }),
  z.strictObject({
    kind: z.literal('relu-approx'),
    degree: z.number().int().min(2).max(8).default(2),
    range: z.tuple([z.number(), z.number()]).default([-4, 4]),
    trainable: z.boolean().default(false),
  }),
]);
