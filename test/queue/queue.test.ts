import { expect } from 'chai';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { hepoly } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { startWorker, type WorkerProcess } from './workers.js';

/**
 * he-validate --queue end to end: a test-started redis-server, two `hepoly worker` processes,
 * the client encrypting shards and decrypting what comes back. The report must match a local
 * run of the same checkpoint and samples.
 */

const SAMPLES = '8';
const SHARD = '2';

describe('he-validate --queue (BullMQ on Redis, 2 worker processes)', function () {
  this.timeout(240_000);
  const tmp = tempDir('hepoly-queue-');
  const ckpt = join(tmp.path, 'ckpt');
  let redis: TestRedis;
  let workers: WorkerProcess[] = [];
  let local: Record<string, unknown>;
  let queued: Record<string, unknown>;

  before(async () => {
    redis = await startRedis(); // throws "redis-server is not installed ... apt-get install" when absent
    // one hidden layer: depth 3, a 5-prime chain (keys, worker setup and every shard cheaper)
    const t = hepoly(['train', 'recipes/quickstart.yaml', '--set', 'train.epochs=1', '--set', 'model.hidden=[16]', '--out', ckpt]);
    expect(t.code, t.stderr).to.equal(0);
    workers = await Promise.all([startWorker(redis.url, ['--lock-ms', '2000']), startWorker(redis.url, ['--lock-ms', '2000'])]);
  });

  after(async () => {
    await Promise.all(workers.map((w) => w.stop()));
    await redis?.stop();
    tmp.cleanup();
  });

  const run = (extra: string[]) => {
    const r = hepoly(['he-validate', ckpt, '--samples', SAMPLES, '--packing', 'sample', '--json', ...extra], { cwd: tmp.path });
    expect(r.code, r.stderr + r.stdout).to.equal(0);
    return r.json!;
  };

  it('gives the local run\'s agreement and accuracy, with every shard from a worker and both workers used', async () => {
    local = run(['--workers', '1']);
    queued = run(['--queue', redis.url, '--shard-size', SHARD, '--run-id', 'r1']);
    expect(queued.samples).to.equal(local.samples);
    expect(queued.agreement).to.equal(local.agreement);
    expect(queued.encrypted_accuracy).to.equal(local.encrypted_accuracy);
    expect(queued.plaintext_accuracy).to.equal(local.plaintext_accuracy);
    // fresh keys and encryption noise differ between the runs; both stay at CKKS noise
    expect(queued.max_abs_error as number).to.be.below(0.05);
    expect(local.max_abs_error as number).to.be.below(0.05);
    const q = queued.queue as { shards: number; computedShards: number; resumedShards: number; shardsPerWorker: Record<string, number> };
    expect(q.shards).to.equal(4);
    expect(q.computedShards).to.equal(4);
    expect(q.resumedShards).to.equal(0);
    expect(Object.values(q.shardsPerWorker).reduce((a, b) => a + b, 0)).to.equal(4);
    // artifact and keys fetched once per worker and run, not once per job
    // (the runs above were synchronous: let the workers' piped output reach this process first)
    await new Promise((r) => setTimeout(r, 300));
    for (const w of workers) expect(w.output().match(/evaluator ready: artifact/g) ?? []).to.have.length(1);
    const pids = workers.map((w) => w.child.pid);
    expect(Object.keys(q.shardsPerWorker).map((w) => Number(w.split(':').pop()))).to.have.members(pids);
  });

  it('re-run with the same --run-id resumes: done shards are read back, not recomputed', () => {
    const again = run(['--queue', redis.url, '--shard-size', SHARD, '--run-id', 'r1']);
    const q = again.queue as { computedShards: number; resumedShards: number };
    expect(q.resumedShards).to.equal(4);
    expect(q.computedShards).to.equal(0);
    // the same decrypted outputs: identical figures, not just close ones
    expect(again.max_abs_error).to.equal(queued.max_abs_error);
    expect(again.agreement).to.equal(queued.agreement);
  });

  it('an interrupted run (two shards collected) recomputes only the other two', () => {
    const state = join(tmp.path, '.hepoly-runs', 'r1');
    for (const k of [1, 3]) {
      expect(existsSync(join(state, `shard-${k}.bin`))).to.equal(true);
      rmSync(join(state, `shard-${k}.bin`));
    }
    const again = run(['--queue', redis.url, '--shard-size', SHARD, '--run-id', 'r1']);
    const q = again.queue as { computedShards: number; resumedShards: number };
    expect(q.resumedShards).to.equal(2);
    expect(q.computedShards).to.equal(2);
    expect(again.agreement).to.equal(local.agreement);
    expect(again.max_abs_error as number).to.be.below(0.05);
  });

  it('a run leaves no shard data behind in Redis (only the content-addressed artifact and keys)', async () => {
    const r = new Redis(redis.url);
    try {
      const keys = await r.keys('hepoly:run:*');
      expect(keys).to.deep.equal([]);
      expect((await r.keys('hepoly:blob:*')).length).to.be.greaterThan(0);
    } finally {
      r.disconnect();
    }
  });

  it('what the queue cannot run yet is refused with the fix, before any work', () => {
    const stacked = hepoly(['he-validate', ckpt, '--samples', '2', '--packing', 'stacked', '--queue', redis.url], { cwd: tmp.path });
    expect(stacked.code).to.equal(1);
    expect(stacked.stderr).to.match(/error: --queue with --packing stacked: queued runs shard samples with sample packing or send one batch pass; use --packing sample, batch or auto/);
    const trace = hepoly(['he-validate', ckpt, '--samples', '2', '--trace', '--queue', redis.url], { cwd: tmp.path });
    expect(trace.code).to.equal(1);
    expect(trace.stderr).to.match(/error: --queue with --trace: not supported/);
    const badId = hepoly(['he-validate', ckpt, '--samples', '2', '--queue', redis.url, '--run-id', 'a:b'], { cwd: tmp.path });
    expect(badId.code).to.equal(2);
    expect(badId.stderr).to.match(/error: --run-id "a:b": use 1-64 letters, digits/);
  });

  it('Redis unreachable at start: a clear message and a non-zero exit', () => {
    const r = hepoly(['he-validate', ckpt, '--samples', '2', '--queue', 'redis://127.0.0.1:1', '--json'], { cwd: tmp.path });
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(/error: --queue redis:\/\/127\.0\.0\.1:1: Redis does not answer/);
  });

  it('a bad HEPOLY_REDIS_RETRY_SECONDS is refused by name before Redis is asked', () => {
    const r = hepoly(['he-validate', ckpt, '--samples', '2', '--queue', redis.url, '--json'], { cwd: tmp.path, env: { HEPOLY_REDIS_RETRY_SECONDS: '0.5' } });
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(/error: HEPOLY_REDIS_RETRY_SECONDS: expected a whole number of seconds \(1 or more\), found "0\.5"/);
  });
});
