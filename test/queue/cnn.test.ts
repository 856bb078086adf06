import { expect } from 'chai';
import { join } from 'node:path';
import { hepoly } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { startWorker, type WorkerProcess } from './workers.js';

const hostOf = (w: WorkerProcess) => /worker (\S+):\d+: waiting/.exec(w.output())![1];

/** A CNN (convolution, pooling: rotations and Galois keys) through the queue, against a local run. */
describe('he-validate --queue: a CNN checkpoint', function () {
  this.timeout(240_000);
  const tmp = tempDir('hepoly-queue-cnn-');
  const ckpt = join(tmp.path, 'cnn');
  let redis: TestRedis;
  let worker: WorkerProcess;

  before(async () => {
    redis = await startRedis();
    const layers = '[{type: conv, filters: 2, kernel: 3}, {type: activation}, {type: avgpool, size: 2}, {type: flatten}, {type: dense}]';
    const t = hepoly(['train', 'recipes/fmnist-cnn.yaml', '--set', 'train.epochs=1', '--set', 'data.limit=200', '--set', `model.layers=${layers}`, '--out', ckpt]);
    expect(t.code, t.stderr).to.equal(0);
    worker = await startWorker(redis.url);
  });

  after(async () => {
    await worker?.stop();
    await redis?.stop();
    tmp.cleanup();
  });

  it('agrees with the local run on the same samples', () => {
    const args = ['he-validate', ckpt, '--samples', '2', '--packing', 'sample', '--json'];
    const local = hepoly([...args, '--workers', '1'], { cwd: tmp.path });
    expect(local.code, local.stderr).to.equal(0);
    const queued = hepoly([...args, '--queue', redis.url, '--shard-size', '1'], { cwd: tmp.path });
    expect(queued.code, queued.stderr).to.equal(0);
    const l = local.json!;
    const q = queued.json!;
    expect(q.packing).to.equal('sample');
    expect(q.agreement).to.equal(l.agreement);
    expect(q.plaintext_accuracy).to.equal(l.plaintext_accuracy);
    expect(q.max_abs_error as number).to.be.below(1e-3);
    // both one-sample shards came from the one worker process
    expect(Object.entries((q.queue as { shardsPerWorker: Record<string, number> }).shardsPerWorker)).to.deep.equal([[`${hostOf(worker)}:${worker.child.pid}`, 2]]);
  });
});
