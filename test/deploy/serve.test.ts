import { expect } from 'chai';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { hepoly } from '../helpers/cli.js';
import { loadCheckpoint } from '../../src/train/checkpoint.js';
import { initBackend } from '../../src/train/backend.js';
import { predict } from '../../src/models/tf-interpreter.js';
import { loadClientArtifact, loadServerArtifact } from '../../src/deploy/artifact-load.js';
import { HEClient, RemoteModel, preprocessSample } from '../../src/deploy/client/index.js';
import { readInputFile } from '../../src/deploy/input-file.js';
import { sampleCsv, serveProcess, stopProcess, tinyArtifacts, type TinyArtifacts } from './fixtures.js';
import { restoreFastestBackend } from '../helpers/backend.js';

/**
 * The deployment as users run it: `hepoly export`, `hepoly serve` in its own process on a free
 * port, `hepoly predict` (CLI) and the client library, for a tiny MLP and a tiny CNN; then a
 * kill -9 of the server, a restart on the same keys folder, and the same key id again.
 */

async function plaintextLogits(checkpoint: string, inputs: Float64Array[]): Promise<Float32Array> {
  await initBackend('cpu');
  const ckpt = loadCheckpoint(checkpoint);
  const per = inputs[0].length;
  const x = new Float32Array(inputs.length * per);
  inputs.forEach((v, i) => x.set(v, i * per));
  return predict(ckpt.graph, ckpt.weights, x, inputs.length);
}

describe('deploy: export, serve, predict (CLI and library)', function () {
  // tests here force the cpu backend; later files in this mocha worker get the fastest back
  after(restoreFastestBackend);
  this.timeout(600000);
  let art: TinyArtifacts;

  before(async () => {
    art = await tinyArtifacts();
  });

  it('export writes a server artifact (program, params, steps, versions) and a client artifact without weights', () => {
    for (const m of [art.mlp, art.cnn]) {
      const server = loadServerArtifact(m.server);
      const client = loadClientArtifact(m.client);
      expect(client.server_digest).to.equal(server.manifest.digest);
      expect(client.params).to.deep.equal(server.manifest.params);
      expect(client.rotation_steps).to.deep.equal(server.manifest.rotation_steps);
      expect(server.manifest.versions).to.include({ node_seal: '6.0.3', artifact_format: 1 });
      expect(readdirSync(m.client)).to.deep.equal(['client.json']);
      // no folded weight of the program appears among the client artifact's numbers
      const weights = new Set<number>();
      for (const s of server.program.steps) {
        if (s.kind !== 'linear') continue;
        for (const t of s.terms) if (t.op.kind !== 'scale') for (const w of t.op.kernel) if (Math.abs(w) > 1e-3 && !Number.isInteger(w)) weights.add(w);
      }
      expect(weights.size).to.be.above(10);
      const numbers: number[] = [];
      JSON.parse(readFileSync(join(m.client, 'client.json'), 'utf8'), (_k, v: unknown) => (typeof v === 'number' && numbers.push(v), v));
      expect(numbers.filter((v) => weights.has(v))).to.deep.equal([]);
    }
  });

  it('export refuses to replace a folder that is not a hepoly artifact', () => {
    const out = join(art.dir, 'foreign');
    mkdirSync(join(out, 'server'), { recursive: true });
    writeFileSync(join(out, 'server', 'precious.txt'), 'keep me');
    const r = hepoly(['export', art.mlp.checkpoint, '--out', out]);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(/error: --out .*foreign: the folder exists and is not a hepoly export/);
    const again = hepoly(['export', art.mlp.checkpoint, '--out', join(art.dir, 'mlp')]);
    expect(again.code, 'an existing export is replaced only with --overwrite').to.equal(1);
    expect(again.stderr).to.match(/already holds a hepoly export .*pass --overwrite/);
    expect(readFileSync(join(out, 'server', 'precious.txt'), 'utf8')).to.equal('keep me');
    const packing = hepoly(['export', art.mlp.checkpoint, '--out', join(art.dir, 'x'), '--packing', 'diagonal']);
    expect(packing.code).to.equal(2);
    expect(packing.stderr).to.match(/--packing diagonal: expected one of batch, sample, stacked, interleaved/);
    expect(existsSync(join(art.dir, 'x'))).to.equal(false);
  });

  for (const kind of ['mlp', 'cnn'] as const) {
    it(`${kind}: predict through the CLI agrees with the plaintext model, keys upload once, and survive a kill -9 of the server`, async () => {
      const m = art[kind];
      const serverKeys = join(art.dir, `${kind}-server-keys`);
      const clientKeys = join(art.dir, `${kind}-client-keys`);
      const input = sampleCsv(art.dir, 4);
      let srv = await serveProcess([m.server, '--workers', '1', '--keys', serverKeys]);
      try {
        const first = hepoly(['predict', m.client, '--server', srv.url, '--input', input, '--keys', clientKeys, '--verify', m.checkpoint, '--json']);
        expect(first.code, first.stderr).to.equal(0);
        const j = first.json!;
        expect(j).to.include({ samples: 4, agreement: 1, keys_uploaded: true });
        expect(j.key_id).to.match(/^[0-9a-f]{64}$/);
        expect(j.bytes_sent as number).to.be.above(j.bytes_received as number);
        expect(j.latency_ms_per_sample as number).to.be.above(0);
        // the local keys folder: owner-only, secret key included
        expect(statSync(clientKeys).mode & 0o777).to.equal(0o700);
        for (const f of readdirSync(clientKeys)) expect(statSync(join(clientKeys, f)).mode & 0o777, f).to.equal(0o600);
        expect(readdirSync(join(serverKeys, j.key_id as string)).sort()).to.deep.equal(['keys.bin', 'meta.json']);

        const again = hepoly(['predict', m.client, '--server', srv.url, '--input', input, '--keys', clientKeys, '--json']);
        expect(again.json).to.include({ keys_uploaded: false, key_id: j.key_id });
        expect(again.json!.predictions).to.deep.equal(j.predictions);
        expect(again.json!.bytes_sent as number).to.be.below((j.bytes_sent as number) / 2);

        // kill -9, restart on the same keys folder: the key id is still known
        await stopProcess(srv.child, 'SIGKILL');
        srv = await serveProcess([m.server, '--workers', '1', '--keys', serverKeys]);
        const restarted = hepoly(['predict', m.client, '--server', srv.url, '--input', input, '--keys', clientKeys, '--json']);
        expect(restarted.code, restarted.stderr).to.equal(0);
        expect(restarted.json).to.include({ keys_uploaded: false, key_id: j.key_id });
        expect(restarted.json!.predictions).to.deep.equal(j.predictions);
      } finally {
        await stopProcess(srv.child, 'SIGKILL');
      }
    });
  }

  it('the client library (HEClient + RemoteModel) decrypts the logits of the plaintext CNN', async () => {
    const m = art.cnn;
    const srv = await serveProcess([m.server, '--workers', '1', '--keys', join(art.dir, 'lib-keys')]);
    const artifact = loadClientArtifact(m.client);
    const client = await HEClient.create(artifact);
    try {
      const remote = new RemoteModel(artifact, { url: srv.url });
      await remote.describe();
      const keys = await remote.ensureKeys(client);
      expect(keys.uploaded).to.equal(true);
      expect(keys.keyId).to.equal(client.keyId);
      const raw = readInputFile(sampleCsv(art.dir, 2), artifact);
      const got = await remote.predict(client, keys.keyId, raw);
      const plain = await plaintextLogits(m.checkpoint, raw.map((r) => preprocessSample(artifact, r)));
      got.logits.forEach((l, s) => {
        for (let c = 0; c < l.length; c++) expect(Math.abs(l[c] - plain[s * l.length + c]), `sample ${s} logit ${c}`).to.be.below(1e-2);
      });
      expect(got.labels.every((x) => artifact.preprocess.labels.includes(x))).to.equal(true);
      expect(await remote.ensureKeys(client)).to.deep.equal({ keyId: client.keyId, uploaded: false });
    } finally {
      client.delete();
      await stopProcess(srv.child, 'SIGKILL');
    }
  });
});
