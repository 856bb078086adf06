import type { HeProgram } from '../../he/program.js';
import { HepolyError } from '../../util/errors.js';
import type { ServerManifest } from '../artifact-format.js';
import type { EvalWork, EvaluationKeyBytes } from './eval-protocol.js';
import type { EvalResult } from './pool.js';

/**
 * `hepoly serve --queue redis://...`: the server's evaluations go to `hepoly worker`s on any
 * machine through the BullMQ queue of src/queue/ (QueueEvaluator: one job per pass) instead of
 * its own threads, so serving capacity grows with the workers. What goes to Redis is what the
 * workers get in a queued he-validate: the program, the clients' public evaluation keys (once
 * per key id, by content hash) and ciphertexts; the server still holds no secret key.
 */

export interface PassRunner {
  run(keyId: string, keys: () => EvaluationKeyBytes, work: EvalWork): Promise<EvalResult>;
  close(): Promise<void>;
}

export async function openQueueRunner(url: string, manifest: ServerManifest, program: HeProgram, timeoutMs: number): Promise<PassRunner> {
  if (manifest.packing.kind !== 'sample' || manifest.refresh_rounds) {
    throw new HepolyError(
      `--queue: the queue's workers evaluate sample-packed programs without client refreshes; this artifact is ${manifest.packing.kind}-packed${manifest.refresh_rounds ? ` with ${manifest.refresh_rounds} refresh rounds` : ''}. Serve it without --queue, or export with --packing sample`,
      { exitCode: 2 },
    );
  }
  // BullMQ and ioredis load only for --queue
  const { QueueEvaluator } = await import('../../queue/evaluator.js');
  const q = await QueueEvaluator.open({ url, params: manifest.params, program, timeoutMs });
  return {
    async run(keyId, keys, work) {
      if (work.kind !== 'pass') throw new Error('internal: refresh segments do not go through the queue');
      const r = await q.run(keyId, () => ({ ...keys(), rotationSteps: manifest.rotation_steps }), work.inputs);
      return { outputs: [{ tensor: program.output, cts: r.outputs }], ms: r.ms };
    },
    close: () => q.close(),
  };
}
