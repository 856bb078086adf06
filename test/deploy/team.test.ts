import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadClientArtifact, loadServerArtifact } from '../../src/deploy/artifact-load.js';
import { exportHeArtifacts } from '../../src/deploy/export.js';
import { DeployServer } from '../../src/deploy/server/server.js';
import { HEClient, RemoteModel, preprocessSample } from '../../src/deploy/client/index.js';
import { readInputFile } from '../../src/deploy/input-file.js';
import { loadCheckpoint } from '../../src/train/checkpoint.js';
import { initBackend } from '../../src/train/backend.js';
import { predict } from '../../src/models/tf-interpreter.js';
import { HepolyError } from '../../src/util/errors.js';
import { sampleCsv, tinyArtifacts } from './fixtures.js';
import { restoreFastestBackend } from '../helpers/backend.js';

/**
 * `hepoly serve --workers-per-sample 2`: each request evaluated by a team of two threads. The
 * answer is the one a single thread gives, byte for byte (same keys, exact sums), a team that
 * loses a thread mid-request answers 500 and is replaced as a whole, and the flag is refused
 * where it cannot apply.
 */
describe('deploy: a team of threads per request (--workers-per-sample)', function () {
  after(restoreFastestBackend);
  this.timeout(300000);

  it('answers with the bytes one thread gives, and the plaintext logits; a thread killed mid-request gives a 500 and a fresh team', async () => {
    const art = await tinyArtifacts();
    expect(loadServerArtifact(art.cnn.server).manifest.packing.kind).to.equal('sample');
    const artifact = loadClientArtifact(art.cnn.client);
    const tmp = mkdtempSync(join(tmpdir(), 'hepoly-team-'));
    const single = await DeployServer.start({ artifactDir: art.cnn.server, port: 0, workers: 1, keysDir: join(tmp, 'keys1') });
    const teamed = await DeployServer.start({ artifactDir: art.cnn.server, port: 0, workers: 2, workersPerSample: 2, keysDir: join(tmp, 'keys2') });
    const client = await HEClient.create(artifact);
    try {
      const raw = readInputFile(sampleCsv(tmp, 2), artifact);
      const x = preprocessSample(artifact, raw[0]);
      const input = client.encrypt(x);
      const answer = async (server: DeployServer) => {
        const remote = new RemoteModel(artifact, { url: server.url });
        const { keyId } = await remote.ensureKeys(client);
        return (await remote.evaluate(keyId, [input])).outputs[0];
      };
      const one = await answer(single);
      const two = await answer(teamed);
      expect(two.map((b) => Buffer.from(b).toString('base64'))).to.deep.equal(one.map((b) => Buffer.from(b).toString('base64')));
      await initBackend('cpu');
      const ckpt = loadCheckpoint(art.cnn.checkpoint);
      const plain = predict(ckpt.graph, ckpt.weights, Float32Array.from(x), 1);
      client.decrypt(two).forEach((v, c) => expect(Math.abs(v - plain[c]), `logit ${c}`).to.be.below(1e-2));
      expect(teamed.pool.size).to.equal(2);

      // one thread of the team dies: the request fails, both threads go, a fresh team answers next
      const remote = new RemoteModel(artifact, { url: teamed.url });
      const { keyId } = await remote.ensureKeys(client);
      const pending = remote.evaluate(keyId, [input]).then(
        () => null,
        (e: Error) => e,
      );
      for (let i = 0; i < 400 && teamed.pool.busyWorkers !== 2; i++) await new Promise((r) => setTimeout(r, 10));
      const [victim, peer] = teamed.pool.liveWorkers();
      await victim.terminate();
      const died = await pending;
      expect(String(died)).to.match(/500|worker died/);
      expect(teamed.pool.liveWorkers()).to.not.include(peer);
      const again = await answer(teamed);
      expect(again.map((b) => Buffer.from(b).toString('base64'))).to.deep.equal(one.map((b) => Buffer.from(b).toString('base64')));
      expect(teamed.pool.replaced).to.equal(1);
    } finally {
      client.delete();
      await single.close();
      await teamed.close();
      rmSync(tmp, { recursive: true, force: true });
    }
  });

  it('refuses a team size that does not divide --workers, and an export packed other than by sample', async () => {
    const art = await tinyArtifacts();
    const tmp = mkdtempSync(join(tmpdir(), 'hepoly-team-'));
    try {
      const refused = (o: Parameters<typeof DeployServer.start>[0]) => DeployServer.start(o).then(async (s) => (await s.close(), null), (e: unknown) => e);
      const odd = await refused({ artifactDir: art.cnn.server, port: 0, workers: 3, workersPerSample: 2, keysDir: join(tmp, 'k') });
      expect(odd).to.be.instanceOf(HepolyError);
      expect(String(odd)).to.match(/--workers-per-sample 2 does not divide --workers 3: use a divisor, e.g. --workers 2/);
      const batch = await exportHeArtifacts({ checkpoint: art.mlp.checkpoint, out: join(tmp, 'batch'), packing: 'batch' });
      const refusedBatch = await refused({ artifactDir: batch.serverDir, port: 0, workers: 2, workersPerSample: 2, keysDir: join(tmp, 'k') });
      expect(refusedBatch).to.be.instanceOf(HepolyError);
      expect(String(refusedBatch)).to.match(/exported with batch packing; only sample packing splits one sample over several threads\. Export it with --packing sample/);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});
