import type { HeParams } from '../../he/params.js';
import type { HeProgram } from '../../he/program.js';
import type { PackingKind } from '../../he/packing/index.js';
import type { TeamInit } from '../../he/team.js';

/**
 * Messages between `hepoly serve`'s main thread and its evaluation workers (eval-worker.ts):
 * plain data only (parameters, the plaintext program, public key bytes, ciphertext bytes).
 * A request carries its client's keys only when the worker does not hold them yet.
 */

export interface EvaluationKeyBytes {
  publicKey: Uint8Array;
  relinKeys: Uint8Array;
  galoisKeys: Uint8Array | null;
}

/** Ciphertexts of one program tensor (a segment's inputs and outputs, `--refresh client` exports). */
export interface TensorCts {
  tensor: number;
  cts: Uint8Array[];
}

/** What one request asks of a worker: a whole pass (one or several samples), or one segment between two client refreshes. */
export type EvalWork =
  | { kind: 'pass'; inputs: Uint8Array[] }
  | { kind: 'segment'; from: number; to: number; tensors: TensorCts[]; keep: number[] };

/** The exported packing the worker plans from the program (src/he/packing/index.ts). */
export interface WorkerPacking {
  kind: PackingKind;
  samplesPerPass: number;
}

export type EvalToWorker =
  /** team: this thread evaluates each request with peers (`--workers-per-sample`, sample packing) */
  | { type: 'init'; params: HeParams; program: HeProgram; packing: WorkerPacking; maxKeySets: number; keptDiagonalBytes: number; keyId: string; keys: EvaluationKeyBytes; team?: TeamInit }
  /** id: the request's number, the same on every member of a team (its epoch) */
  | { type: 'eval'; id: number; keyId: string; keys: EvaluationKeyBytes | null; work: EvalWork };

export type EvalFromWorker =
  | { type: 'ready'; prepareMs: number; heapBytes: number }
  /** a pass's output ciphertexts (outputs[0]; an empty part for a ciphertext the packing leaves out) or a segment's kept tensors */
  | { type: 'evalDone'; id: number; outputs: TensorCts[]; ms: number; heapBytes: number }
  | { type: 'error'; id: number; message: string };
