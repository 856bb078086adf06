import { HepolyError } from '../util/errors.js';
import { initBackend } from '../train/backend.js';
import { parseMode, reportJson, validate, type PackingChoice, type ValidationReport } from '../he/validate.js';
import { refuseVerticalCheckpoint } from '../federated/vertical/checkpoint-guard.js';

export interface HeValidateOptions {
  /** held-out samples to encrypt: a count, or 'all' (default 10 for transformers; see validate) */
  samples?: number | 'all' | string;
  /** auto, batch, sample, stacked, interleaved, stacked:M or interleaved:M */
  packing?: string;
  /** 'auto' or a JSON file {poly_modulus_degree, coeff_modulus_bits, scale_bits} */
  params?: string;
  /** with params 'auto': at least this CKKS scale in bits */
  scaleBits?: number;
  /** simulate: float64 with the same packing and rescale points, no encryption */
  mode?: 'encrypt' | 'simulate';
  /** client: the client decrypts and re-encrypts where the chain runs out of levels */
  refresh?: 'none' | 'client';
  /** server worker threads (default one per core) */
  workers?: number;
  /** sample packing: threads that evaluate each sample together (latency); must divide workers */
  workersPerSample?: number;
  /** decrypt every layer's output and report its error (debug only) */
  trace?: boolean;
  /** progress lines (stages, parameter choice) as the run goes */
  log?: (line: string) => void;
  /** the folder the checkpoint's relative data paths are read from (a moved checkpoint or data) */
  data?: string;
}

/**
 * What `hepoly he-validate --json` prints (snake_case, stable keys). The keys below are on every
 * result; each model adds its own (rotations, refreshes, ...).
 */
export interface HeValidateResult {
  checkpoint: string;
  split: string;
  samples: number;
  mode: string;
  packing: string;
  plaintext_accuracy: number;
  encrypted_accuracy: number;
  agreement: number;
  max_abs_error: number;
  latency_ms_per_sample: number;
  amortized_ms_per_sample: number;
  poly_modulus_degree: number;
  coeff_modulus_bits: number[];
  scale_bits: number;
  levels: number;
  depth: number;
  [key: string]: unknown;
}

/** The full report behind the JSON: the CLI formats its text and markdown from it. */
export interface HeValidation {
  kind: 'graph';
  report: ValidationReport;
}

/** Runs a checkpoint on CKKS-encrypted held-out samples and compares with the plaintext model. */
export async function heValidate(checkpoint: string, o: HeValidateOptions = {}): Promise<HeValidateResult> {
  return heValidationJson(await heValidateReport(checkpoint, o));
}

export function heValidationJson(v: HeValidation): HeValidateResult {
  return reportJson(v.report) as HeValidateResult;
}

export async function heValidateReport(checkpoint: string, o: HeValidateOptions): Promise<HeValidation> {
  refuseVerticalCheckpoint(checkpoint, 'he-validate', o.data);
  const samples = parseSamples(o.samples);
  const report = await validate({
    checkpoint,
    samples,
    packing: (o.packing ?? 'auto') as PackingChoice,
    params: o.params ?? 'auto',
    scaleBits: o.scaleBits,
    trace: !!o.trace,
    mode: o.mode ?? 'encrypt',
    workers: o.workers,
    workersPerSample: o.workersPerSample,
    refresh: o.refresh ?? 'none',
    log: o.log,
    data: o.data,
  });
  return { kind: 'graph', report };
}

/** `--samples`: a whole number, or "all" (the CLI passes the text as typed). */
export function parseSamples(v: number | string | undefined): number | 'all' | undefined {
  if (v === undefined) return undefined;
  if (v === 'all') return 'all';
  const n = typeof v === 'number' ? v : Number(v);
  if (!Number.isInteger(n) || n < 0) throw new HepolyError(`--samples: expected a positive integer or "all", found ${JSON.stringify(v)}`);
  return n;
}
