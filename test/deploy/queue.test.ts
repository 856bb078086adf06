import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { startQueueWorker, type QueueWorker } from '../../src/index.js';
import { loadClientArtifact } from '../../src/deploy/artifact-load.js';
import { DeployServer } from '../../src/deploy/server/server.js';
import { HEClient, RemoteModel, preprocessSample } from '../../src/deploy/client/index.js';
import { readInputFile } from '../../src/deploy/input-file.js';
import { loadCheckpoint } from '../../src/train/checkpoint.js';
import { initBackend } from '../../src/train/backend.js';
import { predict } from '../../src/models/tf-interpreter.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { allRedisValues } from '../queue/redis-values.js';
import { SecretKeyLoader } from '../queue/secret-key-check.js';
import { sampleCsv, tinyArtifacts } from './fixtures.js';
import { restoreFastestBackend } from '../helpers/backend.js';

/**
 * `hepoly serve --queue`: the server hands each request to a `hepoly worker` through the BullMQ
 * queue and answers when the worker has finished. Real SEAL: the client encrypts, a queue
 * worker evaluates, the client decrypts the plaintext model's logits; the server's own worker
 * threads never run, and nothing in Redis is a secret key.
 */
describe('deploy: serve --queue hands evaluations to queue workers', function () {
  // tests here force the cpu backend; later files in this mocha worker get the fastest back
  after(restoreFastestBackend);
  this.timeout(300000);
  let redis: TestRedis;
  let worker: QueueWorker;

  before(async () => {
    redis = await startRedis();
    worker = await startQueueWorker({ url: redis.url });
  });

  after(async () => {
    await worker?.close();
    await redis?.stop();
  });

  it('predictions come from a queue worker and match the plaintext model', async () => {
    const art = await tinyArtifacts();
    const artifact = loadClientArtifact(art.mlp.client);
    const tmp = mkdtempSync(join(tmpdir(), 'hepoly-serve-queue-'));
    const server = await DeployServer.start({ artifactDir: art.mlp.server, port: 0, workers: 1, keysDir: join(tmp, 'keys'), queue: redis.url });
    const client = await HEClient.create(artifact);
    const watch = new Redis(redis.url);
    try {
      const remote = new RemoteModel(artifact, { url: server.url });
      const { keyId } = await remote.ensureKeys(client);
      const raw = readInputFile(sampleCsv(tmp, 3), artifact);
      const r = await remote.predict(client, keyId, raw);
      await initBackend('cpu');
      const ckpt = loadCheckpoint(art.mlp.checkpoint);
      const x = raw.map((v) => preprocessSample(artifact, v));
      const flat = new Float32Array(x.length * x[0].length);
      x.forEach((v, i) => flat.set(v, i * v.length));
      const plain = predict(ckpt.graph, ckpt.weights, flat, x.length);
      const classes = artifact.preprocess.labels.length;
      r.logits.forEach((l, s) => l.forEach((v, c) => expect(Math.abs(v - plain[s * classes + c]), `sample ${s} logit ${c}`).to.be.below(1e-2)));
      expect(worker.jobsDone(), 'one job per sample on the queue worker').to.equal(3);
      expect(server.pool.keyLoads, "the server's own threads never evaluated").to.equal(0);
      // what the queue holds while the server is up: the program and public keys only
      const values = await allRedisValues(watch);
      const loader = new SecretKeyLoader(artifact.params);
      const found: string[] = [];
      for (const v of values) found.push(...(await loader.secretKeysIn(v.path, v.bytes)));
      expect(found).to.deep.equal([]);
      expect(loader.loads, 'the scan reached SEAL objects (the uploaded evaluation keys)').to.be.above(0);
    } finally {
      watch.disconnect();
      client.delete();
      await server.close();
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});
