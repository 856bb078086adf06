import { integerFlag } from '../util/flags.js';
import { defineCommand } from './command.js';

/** `hepoly worker --queue URL`: evaluates shard jobs until SIGINT/SIGTERM. */
export async function runWorker(a: { queue: string; concurrency?: number; lockMs?: number }): Promise<void> {
  const concurrency = a.concurrency === undefined ? 1 : integerFlag('--concurrency', a.concurrency, { min: 1, max: 256 });
  const lockMs = a.lockMs === undefined ? undefined : integerFlag('--lock-ms', a.lockMs, { min: 1000, max: 3_600_000 });
  // loaded here: the other commands never load BullMQ and ioredis
  const { startQueueWorker } = await import('../queue/worker.js');
  const worker = await startQueueWorker({ url: a.queue, concurrency, lockMs, log: (line) => console.log(line) });
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  console.log(`worker ${worker.id}: stopping after ${worker.jobsDone()} jobs`);
  await worker.close();
}

export const workerCommand = defineCommand(
  'worker',
  'evaluate he-validate --queue shard jobs from Redis (holds no secret key; docs/queue.md)',
  (y) =>
    y
      .option('queue', { type: 'string', demandOption: true, describe: 'redis://[:PASSWORD@]HOST:PORT (rediss:// for TLS)' })
      .option('concurrency', { type: 'number', describe: 'jobs at a time, each on its own worker thread (default 1)' })
      .option('lock-ms', { type: 'number', describe: "ms before a silent worker's job is given to another (default 30000)" }),
  (a) => runWorker({ queue: a.queue, concurrency: a.concurrency, lockMs: a.lockMs }),
);
