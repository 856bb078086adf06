import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadClientArtifact } from '../../src/deploy/artifact-load.js';
import { DeployServer } from '../../src/deploy/server/server.js';
import { HEClient, RemoteModel, preprocessSample } from '../../src/deploy/client/index.js';
import { readInputFile } from '../../src/deploy/input-file.js';
import { loadCheckpoint } from '../../src/train/checkpoint.js';
import { initBackend } from '../../src/train/backend.js';
import { predict } from '../../src/models/tf-interpreter.js';
import { sampleCsv, tinyArtifacts } from './fixtures.js';
import { restoreFastestBackend } from '../helpers/backend.js';

/**
 * One worker, several clients with their own keys: the worker keeps each client's keys and the
 * program's encoded diagonals, so alternating clients loads each key set once, and every client
 * decrypts its own correct logits (a wrong key set would decrypt to noise).
 */
describe('deploy: one worker serves several clients', function () {
  // tests here force the cpu backend; later files in this mocha worker get the fastest back
  after(restoreFastestBackend);
  this.timeout(300000);

  it('alternating clients: each key set loaded once, every answer is the plaintext CNN logits', async () => {
    const art = await tinyArtifacts();
    const artifact = loadClientArtifact(art.cnn.client);
    const tmp = mkdtempSync(join(tmpdir(), 'hepoly-pool-'));
    const server = await DeployServer.start({ artifactDir: art.cnn.server, port: 0, workers: 1, keysDir: join(tmp, 'keys') });
    const clients = [await HEClient.create(artifact), await HEClient.create(artifact), await HEClient.create(artifact)];
    try {
      const remote = new RemoteModel(artifact, { url: server.url });
      const ids = [];
      for (const c of clients) ids.push((await remote.ensureKeys(c)).keyId);
      expect(new Set(ids).size).to.equal(3);
      const raw = readInputFile(sampleCsv(tmp, 2), artifact);
      await initBackend('cpu');
      const ckpt = loadCheckpoint(art.cnn.checkpoint);
      const x = preprocessSample(artifact, raw[0]);
      const plain = predict(ckpt.graph, ckpt.weights, Float32Array.from(x), 1);
      for (const k of [0, 1, 2, 0, 1, 2]) {
        const { outputs } = await remote.evaluate(ids[k], [clients[k].encrypt(x)]);
        const logits = clients[k].decrypt(outputs[0]);
        logits.forEach((v, c) => expect(Math.abs(v - plain[c]), `client ${k} logit ${c}`).to.be.below(1e-2));
      }
      expect(server.pool.keyLoads).to.equal(3);
      expect(server.pool.replaced).to.equal(0);
      const metrics = await (await fetch(`${server.url}/metrics`)).text();
      expect(metrics).to.match(/hepoly_worker_key_loads_total 3\n/);
    } finally {
      for (const c of clients) c.delete();
      await server.close();
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});
