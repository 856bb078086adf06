import type { HeParams } from './params.js';
import type { HeProgram } from './program.js';
import type { OpCounts } from './backend.js';
import type { EvaluatorKind } from './packing/packing.js';
import type { TeamInit } from './team.js';

/**
 * Messages between the server's main thread and its worker threads. Everything a worker
 * receives is plain data: parameters, key bytes, the plaintext program (weights as typed
 * arrays) and ciphertext bytes. No SEAL object crosses a thread boundary (none could), and no
 * secret key exists on this side to send.
 */

/** Which evaluator a worker runs (a registered packing's `evaluator`, src/he/packing/packing.ts). */
export type Packing = EvaluatorKind;

export interface WorkerInit {
  params: HeParams;
  publicKey: Uint8Array;
  relinKeys: Uint8Array;
  galoisKeys: Uint8Array | null;
  program: HeProgram;
  packing: Packing;
  /** batch packing: keep every tensor (for --trace) */
  keepAll: boolean;
  /** bytes of accumulators a batch stage group may hold */
  memoryBudget: number;
  /** 'seal' evaluates ciphertexts; 'simulate' float64 vectors with the same schedule */
  mode: 'seal' | 'simulate';
}

/** Where one serialized ciphertext lives: [buffer index, byte offset, byte length], or null. */
export type Ref = [number, number, number] | null;

export interface TensorRefs {
  tensor: number;
  elems: Ref[];
}

export type ToWorker =
  /** team: this thread evaluates each sample with peers (sample packing, --workers-per-sample) */
  | { type: 'init'; init: WorkerInit; team?: TeamInit }
  | { type: 'stage'; id: number; stage: number; group: number[]; buffers: SharedArrayBuffer[]; sources: TensorRefs[] }
  /** epoch: with a team, the request's number, the same for every member */
  | { type: 'sample'; id: number; inputs: Uint8Array[]; trace: boolean; epoch?: number }
  /** sample packing with client refreshes: one segment [from, to) of one sample's pass */
  | { type: 'segment'; id: number; from: number; to: number; tensors: { tensor: number; cts: Uint8Array[] }[]; keep: number[]; epoch?: number }
  | { type: 'close' };

/** heapBytes: the worker isolate's external memory, i.e. its SEAL wasm heap (it only grows). */
export type FromWorker =
  | { type: 'ready'; prepareMs: number; heapBytes: number }
  | { type: 'stageDone'; id: number; buffer: SharedArrayBuffer; exports: { tensor: number; elems: [number, number, number][] }[]; counts: OpCounts; ms: number; heapBytes: number }
  | { type: 'sampleDone'; id: number; outputs: Uint8Array[]; trace: { tensor: number; cts: Uint8Array[] }[]; counts: OpCounts; ms: number; heapBytes: number }
  | { type: 'segmentDone'; id: number; outputs: { tensor: number; cts: Uint8Array[] }[]; counts: OpCounts; ms: number; heapBytes: number }
  | { type: 'error'; id: number; message: string; stack?: string };
