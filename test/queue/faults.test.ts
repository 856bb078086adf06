import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { hepoly } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { SHARD_QUEUE } from '../../src/queue/connection.js';
import { startWorker, type WorkerProcess } from './workers.js';

/**
 * Faults of a queued run, each with real processes: a worker killed with -9 in the middle of
 * a job (BullMQ's stalled-job check gives the job to a worker that joins mid-run), a shard
 * that fails every try, and a worker of another hepoly version.
 */

const bin = fileURLToPath(new URL('../../bin/hepoly.js', import.meta.url));

function hepolyAsync(args: string[], cwd: string, env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [bin, ...args], { cwd, env: { ...process.env, NODE_OPTIONS: '', ...env } });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d) => (stdout += d));
    c.stderr.on('data', (d) => (stderr += d));
    c.on('exit', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

describe('he-validate --queue: faults', function () {
  this.timeout(240_000);
  const tmp = tempDir('hepoly-queue-faults-');
  const ckpt = join(tmp.path, 'ckpt');
  let redis: TestRedis;
  let workers: WorkerProcess[] = [];
  const args = () => ['he-validate', ckpt, '--samples', '4', '--packing', 'sample', '--queue', redis.url, '--shard-size', '2', '--json'];

  before(async () => {
    redis = await startRedis();
    // one hidden layer: depth 3, a 5-prime chain (keys, worker setup and every shard cheaper)
    const t = hepoly(['train', 'recipes/quickstart.yaml', '--set', 'train.epochs=1', '--set', 'model.hidden=[16]', '--out', ckpt]);
    expect(t.code, t.stderr).to.equal(0);
  });

  afterEach(async () => {
    await Promise.all(workers.map((w) => w.stop('SIGKILL')));
    workers = [];
  });

  after(async () => {
    await redis?.stop();
    tmp.cleanup();
  });

  it('a worker killed with -9 mid-job: its job is re-run by a worker that joins later; every sample once', async () => {
    const doomed = await startWorker(redis.url, ['--lock-ms', '2000'], { HEPOLY_QUEUE_TEST_FAULT: 'hang:0' });
    workers.push(doomed);
    const client = hepolyAsync(args(), tmp.path);
    const queue = new Queue(SHARD_QUEUE, { connection: { url: redis.url } as never });
    try {
      // wait until the doomed worker holds shard 0
      for (let i = 0; i < 600; i++) {
        const active = await queue.getActive();
        if (active.some((j) => (j.data as { shard: number }).shard === 0)) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      expect((await queue.getActive()).map((j) => (j.data as { shard: number }).shard)).to.include(0);
    } finally {
      await queue.close();
    }
    await doomed.stop('SIGKILL');
    const rescuer = await startWorker(redis.url, ['--lock-ms', '2000']);
    workers.push(rescuer);
    const r = await client;
    expect(r.code, r.stderr).to.equal(0);
    const json = JSON.parse(r.stdout.trim().split('\n').pop()!) as { samples: number; queue: { shardsPerWorker: Record<string, number>; computedShards: number } };
    expect(json.samples).to.equal(4);
    expect(json.queue.computedShards).to.equal(2);
    expect(json.queue.shardsPerWorker).to.deep.equal({ [Object.keys(json.queue.shardsPerWorker)[0]]: 2 });
    expect(Object.keys(json.queue.shardsPerWorker)[0]).to.match(new RegExp(`:${rescuer.child.pid}$`));
  });

  it('a shard that fails every try ends the run with a message naming it', async () => {
    workers.push(await startWorker(redis.url, [], { HEPOLY_QUEUE_TEST_FAULT: 'poison:1' }));
    const r = await hepolyAsync(args(), tmp.path);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(/error: queue run run-[0-9a-f]+: shard 1 \(samples 2-3\) failed after 3 tries: test fault: shard 1 is poisoned/);
  });

  it('Redis lost mid-run: a clear message, exit 1, and --run-id resumes on a new Redis computing only the missing shard', async () => {
    const doomedRedis = await startRedis();
    try {
      workers.push(await startWorker(doomedRedis.url, [], { HEPOLY_QUEUE_TEST_FAULT: 'hang:1' }));
      const runArgs = (url: string) => ['he-validate', ckpt, '--samples', '4', '--packing', 'sample', '--queue', url, '--shard-size', '2', '--run-id', 'lost', '--json'];
      // 2 s of reconnecting instead of 15: the test waits for the client to give up
      const client = hepolyAsync(runArgs(doomedRedis.url), tmp.path, { HEPOLY_REDIS_RETRY_SECONDS: '2' });
      const shard0 = join(tmp.path, '.hepoly-runs', 'lost', 'shard-0.bin');
      for (let i = 0; i < 1200 && !existsSync(shard0); i++) await new Promise((r) => setTimeout(r, 100));
      expect(existsSync(shard0), 'shard 0 collected before Redis goes').to.equal(true);
      await doomedRedis.stop();
      const r = await client;
      expect(r.code).to.equal(1);
      expect(r.stderr).to.match(/error: queue run lost: lost Redis at redis:\/\/127\.0\.0\.1:\d+ mid-run \(.*\) with 1 of 2 shards collected\. .*re-run with --run-id lost to resume/);
      await Promise.all(workers.splice(0).map((w) => w.stop('SIGKILL')));
      workers.push(await startWorker(redis.url));
      const again = await hepolyAsync(runArgs(redis.url), tmp.path);
      expect(again.code, again.stderr).to.equal(0);
      const json = JSON.parse(again.stdout.trim().split('\n').pop()!) as { samples: number; queue: { computedShards: number; resumedShards: number } };
      expect(json.samples).to.equal(4);
      expect(json.queue.resumedShards).to.equal(1);
      expect(json.queue.computedShards).to.equal(1);
    } finally {
      await doomedRedis.stop();
    }
  });

  it('a worker of another hepoly version refuses the job instead of computing', async () => {
    workers.push(await startWorker(redis.url, [], { HEPOLY_QUEUE_TEST_VERSION: '0.0.0-other' }));
    const r = await hepolyAsync(args(), tmp.path);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(/shard \d \(samples \d-\d\) failed after 1 try: worker .* refuses shard \d: version mismatch: hepoly \S+ \(job\) vs 0\.0\.0-other \(worker\)/);
  });
});
