import type { HeParams } from '../../he/params.js';
import type { HeProgram } from '../../he/program.js';

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

export type EvalToWorker =
  | { type: 'init'; params: HeParams; program: HeProgram; maxKeySets: number; keyId: string; keys: EvaluationKeyBytes }
  | { type: 'sample'; id: number; keyId: string; keys: EvaluationKeyBytes | null; inputs: Uint8Array[] };

export type EvalFromWorker =
  | { type: 'ready'; prepareMs: number; heapBytes: number }
  | { type: 'sampleDone'; id: number; outputs: Uint8Array[]; ms: number; heapBytes: number }
  | { type: 'error'; id: number; message: string };
