import { parseSamples, type HeValidateOptions, type HeValidation } from '../api/he-validate.js';
import { validate, type PackingChoice } from '../he/validate.js';
import { HepolyError } from '../util/errors.js';
import { checkRunId } from './job.js';
import type { QueueOptions } from './server.js';

/** `he-validate --queue`: the library run of src/api/he-validate.ts, its shards on the queue. */
export async function queuedHeValidation(checkpoint: string, o: HeValidateOptions & { data?: string }, queue: QueueOptions): Promise<HeValidation> {
  checkRunId(queue.runId);
  // before keys are made and samples encrypted: an unreachable Redis fails in a second
  // (ioredis and BullMQ load only for --queue runs)
  (await (await import('./connection.js')).connectRedis(queue.url)).disconnect();
  const report = await validate({
    checkpoint,
    samples: parseSamples(o.samples),
    packing: (o.packing ?? 'auto') as PackingChoice,
    params: o.params ?? 'auto',
    scaleBits: o.scaleBits,
    trace: !!o.trace,
    mode: o.mode ?? 'encrypt',
    refresh: o.refresh ?? 'none',
    log: o.log,
    data: o.data,
    queue,
  });
  return { kind: 'graph', report };
}
