import { z } from 'zod';
// the packing kinds' one list; ops/types.ts has only type imports besides it (browser-safe)
import { PACKING_KINDS } from '../ops/types.js';

/**
 * What `hepoly export` writes, typed once for every reader: the server artifact's manifest
 * (server/manifest.json, beside program.json + program.bin) and the client artifact
 * (client/client.json). Browser-safe: a page fetches client.json and parses it with the
 * same schema. Field names are snake_case because they are a file format.
 */

/** Bumped whenever a reader of an older artifact would misread a newer one. */
export const ARTIFACT_FORMAT_VERSION = 1;
export const SERVER_FORMAT = 'hepoly-he-server';
export const CLIENT_FORMAT = 'hepoly-he-client';

export const HeParamsSchema = z.object({
  polyModulusDegree: z.number().int(),
  coeffModulusBits: z.array(z.number().int()),
  scaleBits: z.number(),
});

export const VersionsSchema = z.object({
  hepoly: z.string(),
  node_seal: z.string(),
  seal: z.string(),
  artifact_format: z.number().int(),
});
export type Versions = z.infer<typeof VersionsSchema>;

/** Which packing the server evaluates, and how many samples share one pass (absent: 1). */
export const PackingSchema = z.object({
  kind: z.enum(PACKING_KINDS),
  samples_per_pass: z.number().int().min(2).optional(),
});

export const ServerManifestSchema = z.object({
  format: z.literal(SERVER_FORMAT),
  versions: VersionsSchema,
  checkpoint: z.string(),
  params: HeParamsSchema,
  packing: PackingSchema,
  /** the rotations the program uses: the client makes a Galois key for each, nothing more */
  rotation_steps: z.array(z.number().int()),
  input_shape: z.array(z.number().int()),
  classes: z.number().int(),
  input_ciphertexts: z.number().int(),
  output_ciphertexts: z.number().int(),
  depth: z.number().int(),
  /** client round trips per request (`--refresh client` exports; absent: none) */
  refresh_rounds: z.number().int().min(1).optional(),
  /** sha256 of each program file, so the digest below covers the weights */
  files: z.record(z.string(), z.string()),
  /** sha256 over this manifest without the digest field (see artifactDigest) */
  digest: z.string().regex(/^[0-9a-f]{64}$/),
});
export type ServerManifest = z.infer<typeof ServerManifestSchema>;

/**
 * One pass's tensor in the slots: replicas[r][element] = ct * slots + slot, or -1 (zero). With
 * several samples per pass the elements are sample-major (element e of sample s is s * size + e).
 */
export const SlotLayoutSchema = z.object({
  shape: z.array(z.number().int()),
  ciphertexts: z.number().int(),
  replicas: z.array(z.union([z.array(z.number().int()), z.object({ runs: z.array(z.number().int()) }).transform((r, ctx) => expandRuns(r.runs, ctx))])),
});
export type SlotLayout = z.infer<typeof SlotLayoutSchema>;
/** A layout as client.json writes it: each replica a list or its runs. */
export type WrittenSlotLayout = z.input<typeof SlotLayoutSchema>;

/**
 * A replica as client.json writes it: [start, step, count, ...], arithmetic runs of slot
 * numbers. A batch pass places element f of sample s at slot f * slots + s, one run per
 * sample: a few kilobytes where the list was 25 MB for a 784-pixel image. Read back (the
 * schema's transform) as the list, so no reader sees runs.
 */
export function toRuns(replica: readonly number[]): { runs: number[] } {
  const runs: number[] = [];
  for (let i = 0; i < replica.length; ) {
    const step = i + 1 < replica.length ? replica[i + 1] - replica[i] : 0;
    let n = 1;
    while (i + n < replica.length && replica[i + n] - replica[i + n - 1] === step) n++;
    runs.push(replica[i], n > 1 ? step : 0, n);
    i += n;
  }
  return { runs };
}

/** A layout to write: each replica as runs when that is shorter (batch and most sample layouts), else as the list. */
export function compactLayout(l: SlotLayout): WrittenSlotLayout {
  return {
    ...l,
    replicas: l.replicas.map((r) => {
      const runs = toRuns(r);
      return JSON.stringify(runs).length < JSON.stringify(r).length ? runs : r;
    }),
  };
}

function expandRuns(runs: number[], ctx: z.RefinementCtx): number[] {
  if (runs.length % 3 || runs.some((v, k) => k % 3 === 2 && v < 1)) {
    ctx.addIssue({ code: 'custom', message: 'runs: expected [start, step, count] triples with count >= 1' });
    return z.NEVER;
  }
  const out: number[] = [];
  for (let k = 0; k < runs.length; k += 3) for (let j = 0; j < runs[k + 2]; j++) out.push(runs[k] + j * runs[k + 1]);
  return out;
}

export const NormalizeSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('standard'), mean: z.array(z.number()), std: z.array(z.number()) }),
  z.object({ kind: z.literal('minmax'), min: z.array(z.number()), max: z.array(z.number()) }),
  z.object({ kind: z.literal('affine'), scale: z.number(), shift: z.number() }),
  z.object({ kind: z.literal('none') }),
]);

export const ClientArtifactSchema = z.object({
  format: z.literal(CLIENT_FORMAT),
  versions: VersionsSchema,
  /** the server artifact this client was exported with (its manifest digest) */
  server_digest: z.string().regex(/^[0-9a-f]{64}$/),
  params: HeParamsSchema,
  packing: PackingSchema,
  rotation_steps: z.array(z.number().int()),
  slots: z.number().int(),
  /** the server hands back ciphertexts this many times per request, for the client to re-encrypt */
  refresh_rounds: z.number().int().min(1).optional(),
  preprocess: z.object({
    labels: z.array(z.string()),
    input_shape: z.array(z.number().int()),
    /** CSV checkpoints: the feature columns, in order */
    features: z.array(z.string()).optional(),
    normalize: NormalizeSchema,
    /** the training data's format: csv rows of feature values, or idx images (raw bytes, normalized below) */
    source: z.enum(['csv', 'idx']),
    /** token ids become one-hot rows before packing (a language model's context; src/he/input-encoding.ts) */
    input_encoding: z.object({ kind: z.literal('one-hot'), vocab: z.number().int().min(1) }).optional(),
  }),
  input: SlotLayoutSchema,
  output: SlotLayoutSchema,
});
export type ClientArtifact = z.infer<typeof ClientArtifactSchema>;

/** The part of the manifest the digest covers: everything but the digest itself, keys sorted. */
export function digestInput(m: Omit<ServerManifest, 'digest'> & { digest?: string }): string {
  const { digest: _drop, ...rest } = m;
  void _drop;
  return canonicalJson(rest);
}

function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}
