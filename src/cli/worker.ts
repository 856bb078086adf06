import { integerFlag } from './args.js';

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
