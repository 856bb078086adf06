import { expect } from 'chai';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { train } from '../../src/train/loop.js';
import { loadRecipe } from '../../src/recipe/load.js';
import { validate, type ValidationReport } from '../../src/he/validate.js';
import { startQueueWorker, type QueueWorker } from '../../src/queue/worker.js';
import { tempDir } from '../helpers/tmp.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';

/**
 * A ResNet deeper than its ring allows, through the queue with --refresh client: each shard
 * runs as one job per segment, its results come back to the client between two (decrypted,
 * encrypted again) and go out as the shard's next job. Real SEAL throughout.
 */
describe('he-validate --queue --refresh client: a ResNet cut into segments', function () {
  this.timeout(300_000);
  // 5 levels for a depth-15 program: 2 client refreshes per sample
  const run = queuedCheckpoint(
    'hepoly-queue-refresh-',
    () => [
      'name: tiny-resnet',
      `extends: ${join(process.cwd(), 'recipes/fmnist-base.yaml')}`,
      'model: {kind: resnet, depth: 8, widths: [2, 2, 4], skip: standard, pad_to: 32, activation: {kind: quad}}',
      'data: {limit: 64, test_limit: 8, split: {validation: 0.01}}',
      'train: {epochs: 1, batch: 32}',
    ],
    { poly_modulus_degree: 8192, coeff_modulus_bits: [40, 27, 27, 27, 27, 27, 40], scale_bits: 27 },
  );

  it('agrees with the plaintext model; every shard crosses each cut once as a new job, and the round trips are counted', async () => {
    const queued: ValidationReport = await validate({ checkpoint: run.ckpt, samples: 3, params: run.params, refresh: 'client', packing: 'sample', queue: { url: run.redis.url, shardSize: 1 } });
    expect(queued.depth).to.equal(15);
    // validate compares the decrypted logits with the plaintext model's: CKKS noise only
    expect(queued.agreement).to.equal(1);
    expect(queued.maxAbsError).to.be.below(1e-2);
    // the cuts a local run makes (test/he/resnet.test.ts): 2 per sample, each counted with its ciphertexts
    expect(queued.refreshes!.perPass).to.equal(2);
    expect(queued.refreshes!.total).to.equal(3 * 2);
    for (const p of queued.refreshes!.points) {
      expect(p.ciphertexts).to.be.above(0);
      expect(p.bytesToClient).to.be.above(0);
      expect(p.bytesToServer).to.be.above(0);
    }
    const q = queued.queue!;
    expect(q.segmentsPerShard).to.equal(3);
    expect(q.computedShards).to.equal(3);
    expect(q.roundTrips).to.equal(3 * 2);
    expect(q.jobs).to.equal(3 * 3);
    expect(Object.values(q.shardsPerWorker)).to.deep.equal([3]);
    // depth first: shard 0's second segment (queued after its refresh, while shard 1's first
    // runs) goes ahead of shard 2, which has not started; FIFO would run every first segment first
    const started = run.lines.flatMap((l) => /shard job run-[0-9a-f]+\.[0-9a-f]+\.(\d+(?:\.\d+)?) started/.exec(l)?.[1] ?? []);
    expect(started).to.have.length(9);
    expect(started.indexOf('0.1'), started.join(' ')).to.be.below(started.indexOf('2'));
    // one evaluator set-up for all nine jobs: the artifact and keys are fetched once
    expect(run.lines.filter((l) => /evaluator ready/.test(l))).to.have.length(1);
  });
});

/**
 * A transformer through the queue: attention runs only batch packed, so the run's one pass is
 * its shard, and with --refresh client each segment of it a job. Real SEAL throughout.
 */
describe('he-validate --queue: a transformer (token packing) with --refresh client', function () {
  this.timeout(300_000);
  const data = join(process.cwd(), 'datasets/breast-cancer-wisconsin.csv');
  const run = queuedCheckpoint(
    'hepoly-queue-vit-',
    () => [
      'name: tiny-vit',
      'seed: 3',
      `data: {source: csv, path: ${data}, label: diagnosis, features: [${readFileSync(data, 'utf8').split('\n')[0].split(',').slice(0, 16).join(', ')}], shape: [4, 4, 1], normalize: standard, split: {validation: 0.2}}`,
      'model: {kind: transformer, task: classify, patch: 2, layers: 1, dim: 2, heads: 1, mlp_ratio: 1, attention: {kind: power-softmax, p: 2}, norm: batchnorm, activation: {kind: quad}}',
      'train: {epochs: 2, batch: 32, optimizer: {kind: adam, lr: 0.01}}',
    ],
    // q0 = 49 bits: the rows' reciprocals of this ViT's widely spread denominators reach ~1e4
    { poly_modulus_degree: 8192, coeff_modulus_bits: [49, 30, 30, 30, 30, 49], scale_bits: 30 },
  );

  it('the pass agrees with the plaintext model; each segment is a job of the one shard, each cut a round trip', async () => {
    const queued: ValidationReport = await validate({ checkpoint: run.ckpt, samples: 6, params: run.params, refresh: 'client', queue: { url: run.redis.url } });
    expect(queued.packing).to.equal('token');
    expect(queued.agreement).to.equal(1);
    expect(queued.maxAbsError).to.be.below(2e-2 * Math.max(1, queued.logitRange));
    const cuts = queued.refreshes!.perPass;
    expect(cuts).to.be.at.least(2);
    const q = queued.queue!;
    expect(q.shards).to.equal(1);
    expect(q.segmentsPerShard).to.equal(cuts + 1);
    expect(q.roundTrips).to.equal(cuts);
    expect(q.jobs).to.equal(cuts + 1);
    expect(run.lines.filter((l) => /evaluator ready/.test(l))).to.have.length(1);
  });
});

/**
 * Redis, a checkpoint trained from the recipe's lines, a --params file and the library's worker
 * in this process (the same evaluator `hepoly worker` runs), set up before the suite's tests.
 */
function queuedCheckpoint(prefix: string, recipeLines: () => string[], params: object): { ckpt: string; params: string; redis: TestRedis; lines: string[] } {
  const tmp = tempDir(prefix);
  const run = { ckpt: join(tmp.path, 'ckpt'), params: join(tmp.path, 'params.json'), redis: null as unknown as TestRedis, lines: [] as string[] };
  let worker: QueueWorker | undefined;
  before(async () => {
    run.redis = await startRedis();
    const recipe = join(tmp.path, 'recipe.yaml');
    writeFileSync(recipe, recipeLines().join('\n'));
    const { recipe: r } = loadRecipe(recipe, []);
    await train({ recipe: r, recipeFile: recipe, outDir: run.ckpt, callbacks: {} });
    writeFileSync(run.params, JSON.stringify(params));
    worker = await startQueueWorker({ url: run.redis.url, log: (l) => run.lines.push(l) });
  });
  after(async () => {
    await worker?.close();
    await run.redis?.stop();
    tmp.cleanup();
  });
  return run;
}
