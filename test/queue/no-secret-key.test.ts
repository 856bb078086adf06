import { expect } from 'chai';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { validate } from '../../src/he/validate.js';
import { decodeArtifact } from '../../src/queue/artifact.js';
import type { HeParams } from '../../src/he/params.js';
import { CkksContext, loadSeal } from '../../src/he/seal.js';
import { hepoly } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { allRedisValues } from './redis-values.js';
import { SecretKeyLoader } from './secret-key-check.js';
import { startWorker, type WorkerProcess } from './workers.js';

/**
 * Jobs carry only ciphertexts, public keys and the server artifact: every value in Redis,
 * read while the run's jobs, inputs and results are all still there, is loaded as a SEAL
 * SecretKey and none loads; a planted secret key (positive control) does.
 */
describe('he-validate --queue: no secret key in Redis', function () {
  this.timeout(180_000);
  const tmp = tempDir('hepoly-queue-sk-');
  const ckpt = join(tmp.path, 'ckpt');
  let redis: TestRedis;
  let worker: WorkerProcess;

  before(async () => {
    redis = await startRedis();
    // one hidden layer: depth 3, a 5-prime chain (keys, contexts and the scan's loads all cheaper)
    const t = hepoly(['train', 'recipes/quickstart.yaml', '--set', 'train.epochs=1', '--set', 'model.hidden=[16]', '--out', ckpt]);
    expect(t.code, t.stderr).to.equal(0);
    worker = await startWorker(redis.url);
  });

  after(async () => {
    await worker?.stop();
    await redis?.stop();
    tmp.cleanup();
  });

  /** Scans Redis just before the run cleans up: every value loaded as a SecretKey, and a planted one as the control. */
  function scanner() {
    const found = { snapshot: [] as { path: string; bytes: Buffer }[], planted: [] as string[], loader: null as SecretKeyLoader | null, findings: [] as string[] };
    const scan = async (r: Redis) => {
      found.snapshot = await allRedisValues(r);
      const artifact = found.snapshot.find((v) => v.path.startsWith('hepoly:blob:') && tryArtifact(v.bytes));
      expect(artifact, 'the server artifact is in Redis').to.not.equal(undefined);
      const params = tryArtifact(artifact!.bytes)!;
      found.loader = new SecretKeyLoader(params);
      for (const v of found.snapshot) found.findings.push(...(await found.loader.secretKeysIn(v.path, v.bytes)));
      // positive control: the same check on a real secret key stored the same way
      await r.set('planted:secret-key', Buffer.from(await secretKeyBytes(params)));
      const again = await allRedisValues(r);
      const p = again.find((v) => v.path === 'planted:secret-key')!;
      found.planted = await found.loader.secretKeysIn(p.path, p.bytes);
      await r.del('planted:secret-key');
    };
    return { scan, found };
  }

  it('every stored value fails to load as a SecretKey; a planted one is found', async () => {
    const { scan, found } = scanner();
    const report = await validate({ checkpoint: ckpt, samples: 4, packing: 'sample', queue: { url: redis.url, shardSize: 2, beforeCleanup: scan } });
    expect(report.queue!.computedShards).to.equal(2);
    // the scan saw the run: both shards' inputs and results, the evaluation keys and the BullMQ jobs
    const paths = found.snapshot.map((v) => v.path);
    expect(paths.filter((p) => /:in:\d+$/.test(p))).to.have.length(2);
    expect(paths.filter((p) => /:out:\d+$/.test(p))).to.have.length(2);
    expect(paths.filter((p) => p.startsWith('hepoly:blob:'))).to.have.length.greaterThanOrEqual(2);
    expect(paths.some((p) => p.startsWith('bull:hepoly-shards:'))).to.equal(true);
    expect(found.loader!.candidates).to.be.greaterThan(found.snapshot.length);
    // at least: public, relin and Galois keys, 4 input and 4 output ciphertexts were loaded into SEAL
    expect(found.loader!.loads).to.be.greaterThanOrEqual(11);
    expect(found.findings).to.deep.equal([]);
    expect(found.planted).to.deep.equal(['planted:secret-key']);
  });

  it('a batch-packed run (the path transformers take): its one pass in Redis holds no secret key either', async () => {
    const { scan, found } = scanner();
    const report = await validate({ checkpoint: ckpt, samples: 4, packing: 'batch', queue: { url: redis.url, beforeCleanup: scan } });
    expect(report.packing).to.equal('batch');
    expect(report.agreement).to.equal(1);
    expect(report.queue!.computedShards).to.equal(1);
    const paths = found.snapshot.map((v) => v.path);
    expect(paths.filter((p) => /:in:\d+$/.test(p))).to.have.length(1);
    expect(paths.filter((p) => /:out:\d+$/.test(p))).to.have.length(1);
    // public and relin keys, one ciphertext per input feature and per logit
    expect(found.loader!.loads).to.be.greaterThanOrEqual(2 + 30 + 2);
    expect(found.findings).to.deep.equal([]);
    expect(found.planted).to.deep.equal(['planted:secret-key']);
  });
});

function tryArtifact(bytes: Uint8Array): HeParams | null {
  try {
    return decodeArtifact(bytes).params;
  } catch {
    return null;
  }
}

async function secretKeyBytes(params: HeParams): Promise<Uint8Array> {
  const seal = await loadSeal();
  const ctx = CkksContext.create(seal, params);
  const kg = seal.KeyGenerator(ctx.context);
  const sk = kg.secretKey();
  const bytes = sk.saveArray();
  sk.delete();
  kg.delete();
  ctx.delete();
  return bytes;
}
