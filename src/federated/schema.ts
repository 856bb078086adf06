import { z } from 'zod';

/**
 * The `federated:` section of a recipe (see docs/federated.md). Kept beside the federated code;
 * src/recipe/schema.ts embeds it so a recipe is still validated once, in one place.
 */

const posInt = z.number().int().positive();

const Party = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9._-]+$/, 'letters, digits, ".", "_" or "-" (it names the party on the wire and in logs)'),
  path: z.string(),
  /** vertical: the ID column rows are matched by */
  key: z.string().optional(),
  /** vertical: true on the one party that holds the label (and the CKKS secret key) */
  label: z.boolean().default(false),
  /** vertical: this party's feature columns (default: every column but the key and the label) */
  features: z.array(z.string()).min(1).optional(),
});

const Dp = z.strictObject({
  /** record-level budget over the whole run */
  epsilon: z.number().positive('epsilon must be > 0: it is the privacy budget (smaller is more private); remove dp to train without it'),
  delta: z.number().positive().lt(1).default(1e-5),
  /** L2 bound of one record's contribution (per-example gradient; vertical: per-row embedding and gradient) */
  clip: z.number().positive().default(1),
  /** horizontal: Poisson sampling rate of each record per round (default: train.batch / total records) */
  sample_rate: z.number().positive().max(1).optional(),
});

const HeParams = z.strictObject({
  poly_modulus_degree: z.union([z.literal(4096), z.literal(8192), z.literal(16384)]).default(4096),
});

const Split = z.strictObject({
  /** iid: stratified shares; label-skew: each party gets `skew` of its rows from one class */
  scheme: z.enum(['iid', 'label-skew']).default('iid'),
  skew: z.number().min(0).max(1).default(0.8),
});

export const FederatedSchema = z.strictObject({
  partition: z.enum(['horizontal', 'vertical']),
  parties: z.array(Party).min(2, 'a federation needs at least 2 parties'),
  rounds: posInt.default(10),
  local_epochs: posInt.default(1),
  aggregation: z.enum(['he', 'plain']).default('he'),
  secure_aggregation: z.boolean().default(true),
  dp: Dp.optional(),
  he: HeParams.default({ poly_modulus_degree: 4096 }),
  /** horizontal: write the party CSVs from data.path's training split before starting (a simulation) */
  split: Split.optional(),
  /** seconds the coordinator waits for a party's contribution before it redoes the round without it */
  round_timeout: z.number().positive().default(120),
});

export type FederatedConfig = z.infer<typeof FederatedSchema>;
export type PartyConfig = z.infer<typeof Party>;
export type DpConfig = z.infer<typeof Dp>;
