import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportHeArtifacts } from '../../src/deploy/export.js';
import { loadClientArtifact, loadServerArtifact } from '../../src/deploy/artifact-load.js';
import { DeployServer } from '../../src/deploy/server/server.js';
import { HEClient, RemoteModel, decodeFrames, encodeFrames, preprocessSample, type ClientArtifact } from '../../src/deploy/client/index.js';
import { jsonPart, parseJsonPart } from '../../src/deploy/framing.js';
import { readInputFile } from '../../src/deploy/input-file.js';
import { loadCheckpoint } from '../../src/train/checkpoint.js';
import { initBackend } from '../../src/train/backend.js';
import { predict } from '../../src/models/tf-interpreter.js';
import { sampleCsv, tinyArtifacts, trainTinyVit } from './fixtures.js';
import { restoreFastestBackend } from '../helpers/backend.js';
import { hepoly } from '../helpers/cli.js';

/**
 * A model deeper than its CKKS chain, served with client refreshes: the tiny MLP exported with
 * `--refresh client` and a 2-level chain, so the server must hand ciphertexts back to the data
 * owner between segments. The client encrypts, the server evaluates each segment on
 * ciphertexts only, the client decrypts and re-encrypts in each round, and the final logits
 * decrypted here match the plaintext model. Bad session requests get a 4xx and the server
 * (and the session) go on.
 */

interface Answer {
  status: number;
  error: string;
  bytes: Uint8Array;
}

async function post(url: string, path: string, body: Uint8Array, method = 'POST'): Promise<Answer> {
  const res = await fetch(`${url}${path}`, { method, headers: { 'content-type': 'application/octet-stream' }, body: body as BodyInit });
  const bytes = new Uint8Array(await res.arrayBuffer());
  let error = '';
  if (!res.ok) {
    try {
      error = (JSON.parse(new TextDecoder().decode(bytes)) as { error?: string }).error ?? '';
    } catch {
      error = '';
    }
  }
  return { status: res.status, error, bytes };
}

describe('deploy: --refresh client exports, served with refresh sessions', function () {
  // tests here force the cpu backend; later files in this mocha worker get the fastest back
  after(restoreFastestBackend);
  this.timeout(600000);
  let tmp: string;
  let artifact: ClientArtifact;
  let server: DeployServer;
  let client: HEClient;
  let keyId: string;
  let rounds: number;
  let inputs: Float64Array[];
  let plain: Float32Array;

  before(async () => {
    const art = await tinyArtifacts();
    tmp = mkdtempSync(join(tmpdir(), 'hepoly-refresh-'));
    // 2 levels for a deeper network: the program is cut into segments with client refreshes
    const params = join(tmp, 'params.json');
    writeFileSync(params, JSON.stringify({ poly_modulus_degree: 8192, coeff_modulus_bits: [45, 30, 30, 45], scale_bits: 30 }));
    const refused = await exportHeArtifacts({ checkpoint: art.mlp.checkpoint, out: join(tmp, 'no'), params }).catch((e: Error) => e);
    expect(String(refused)).to.match(/needs depth \d+ but these 4 primes give 2 levels.*--refresh client/);
    const r = await exportHeArtifacts({ checkpoint: art.mlp.checkpoint, out: join(tmp, 'export'), params, refresh: 'client' });
    rounds = r.refreshRounds;
    expect(rounds, 'the program is cut').to.be.at.least(1);
    expect(loadServerArtifact(r.serverDir).manifest.refresh_rounds).to.equal(rounds);
    artifact = loadClientArtifact(r.clientDir);
    expect(artifact.refresh_rounds).to.equal(rounds);
    server = await DeployServer.start({ artifactDir: r.serverDir, port: 0, workers: 1, keysDir: join(tmp, 'keys'), maxRequestBytes: 8 * 2 ** 20 });
    client = await HEClient.create(artifact);
    keyId = (await new RemoteModel(artifact, { url: server.url }).ensureKeys(client)).keyId;
    const raw = readInputFile(sampleCsv(tmp, 2), artifact);
    inputs = raw.map((x, i) => preprocessSample(artifact, x, `sample ${i}`));
    await initBackend('cpu');
    const ckpt = loadCheckpoint(art.mlp.checkpoint);
    const flat = new Float32Array(inputs.length * inputs[0].length);
    inputs.forEach((v, i) => flat.set(v, i * v.length));
    plain = predict(ckpt.graph, ckpt.weights, flat, inputs.length);
  });

  after(async () => {
    client?.delete();
    await server?.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('the library predicts through every refresh round: decrypted logits match the plaintext model', async () => {
    const remote = new RemoteModel(artifact, { url: server.url });
    expect((await remote.describe()).refresh_rounds).to.equal(rounds);
    const classes = artifact.preprocess.labels.length;
    const r = await remote.evaluate(keyId, inputs.map((x) => client.encrypt(x)), client);
    expect(r.rounds, 'one round trip per cut').to.equal(rounds);
    r.outputs.forEach((o, s) => {
      const logits = client.decrypt(o);
      logits.forEach((v, c) => expect(Math.abs(v - plain[s * classes + c]), `sample ${s} logit ${c}`).to.be.below(1e-2));
    });
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    expect(metrics).to.match(new RegExp(`hepoly_refresh_round_trips_total ${rounds}\\n`));
    expect(metrics).to.match(/hepoly_refresh_sessions 0\n/);
  });

  it('bad session requests get a 4xx, the session survives them, and a finished or deleted session is gone', async () => {
    const start = encodeFrames([jsonPart({ key_id: keyId, server_digest: artifact.server_digest, artifact_format: 1, samples: 1 }), ...client.encrypt(inputs[0])]);
    const first = await post(server.url, '/v1/predict', start);
    expect(first.status).to.equal(200);
    const parts = decodeFrames(first.bytes, 'reply');
    const head = parseJsonPart(parts[0], 'reply') as { state: string; session_id: string; round: number; per_sample: number };
    expect(head).to.include({ state: 'refresh', round: 1 });
    const handed = parts.slice(1).map((p) => Uint8Array.from(p));
    expect(handed.length).to.equal(head.per_sample);
    const path = `/v1/sessions/${head.session_id}/continue`;
    const body = (round: number, cts: Uint8Array[]) => encodeFrames([jsonPart({ round }), ...cts]);

    const unknown = await post(server.url, `/v1/sessions/${'0'.repeat(32)}/continue`, body(1, handed));
    expect(unknown.status).to.equal(404);
    expect(unknown.error).to.match(/unknown on this server.*POST \/v1\/predict/);
    const malformed = await post(server.url, '/v1/sessions/..%2F..%2Fetc/continue', body(1, handed));
    expect(malformed.status).to.equal(400);
    expect(malformed.error).to.match(/expected 32 hex digits/);
    // the server's own ciphertexts, not re-encrypted: below the top level
    const stale = await post(server.url, path, body(1, handed));
    expect(stale.status).to.equal(400);
    expect(stale.error).to.match(/ciphertext 0: at level \d+, expected a fresh encryption at level 2/);
    const fresh = client.refresh(handed);
    const short = await post(server.url, path, body(1, fresh.slice(1)));
    expect(short.status).to.equal(400);
    expect(short.error).to.match(new RegExp(`${fresh.length - 1} ciphertexts, round 1 handed out ${fresh.length} per sample`));
    const wrongRound = await post(server.url, path, body(2, fresh));
    expect(wrongRound.status).to.equal(409);
    const notFramed = await post(server.url, path, new Uint8Array([1, 2, 3]));
    expect(notFramed.status).to.equal(400);
    expect(notFramed.error).to.match(/not a hepoly framed body/);

    // the session went on through all of that: finish it by hand
    let reply = await post(server.url, path, body(1, fresh));
    for (let round = 2; round <= rounds; round++) {
      expect(reply.status).to.equal(200);
      const p = decodeFrames(reply.bytes, 'reply');
      reply = await post(server.url, path, body(round, client.refresh(p.slice(1).map((x) => Uint8Array.from(x)))));
    }
    expect(reply.status).to.equal(200);
    const last = decodeFrames(reply.bytes, 'reply');
    expect(parseJsonPart(last[0], 'reply')).to.include({ state: 'done', samples: 1 });
    const logits = client.decrypt(last.slice(1).map((x) => Uint8Array.from(x)));
    logits.forEach((v, c) => expect(Math.abs(v - plain[c])).to.be.below(1e-2));
    const again = await post(server.url, path, body(rounds + 1, fresh));
    expect(again.status, 'a finished session is gone').to.equal(404);

    const second = decodeFrames((await post(server.url, '/v1/predict', start)).bytes, 'reply');
    const id = (parseJsonPart(second[0], 'reply') as { session_id: string }).session_id;
    expect((await post(server.url, `/v1/sessions/${id}`, new Uint8Array(0), 'DELETE')).status).to.equal(204);
    expect((await post(server.url, `/v1/sessions/${id}/continue`, body(1, fresh))).status).to.equal(404);
    expect((await fetch(`${server.url}/v1/health`)).status).to.equal(200);
  });
});

describe('deploy: transformers (token and batch packing) exported with --refresh client and served', function () {
  after(restoreFastestBackend);
  this.timeout(600000);
  let tmp: string;

  before(() => {
    tmp = mkdtempSync(join(tmpdir(), 'hepoly-refresh-vit-'));
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('the default packing is token (one ciphertext per feature, Galois keys for whole token blocks); every round of the session goes through the client; decrypted logits match the plaintext model', async () => {
    const checkpoint = trainTinyVit(tmp);
    const params = join(tmp, 'params.json');
    // q0 = 49 bits: this ViT's denominators span [0.001, 2449], so the rows' reciprocals reach ~4e4
    writeFileSync(params, JSON.stringify({ poly_modulus_degree: 8192, coeff_modulus_bits: [49, 30, 30, 30, 30, 49], scale_bits: 30 }));
    const r = await exportHeArtifacts({ checkpoint, out: join(tmp, 'export'), params, refresh: 'client' });
    expect(r.packing).to.equal('token');
    expect(r.rotationSteps.length, 'other tokens are read by rotating token blocks').to.be.above(0);
    expect(r.refreshRounds, 'attention deeper than 4 levels is cut').to.be.at.least(2);
    const artifact = loadClientArtifact(r.clientDir);
    // the patches' features, one ciphertext each (batch packing: one per pixel)
    expect(artifact.input.ciphertexts).to.be.below(artifact.preprocess.input_shape.reduce((a, b) => a * b, 1));
    const server = await DeployServer.start({ artifactDir: r.serverDir, port: 0, workers: 1, keysDir: join(tmp, 'keys'), maxRequestBytes: 256 * 2 ** 20 });
    const client = await HEClient.create(artifact);
    try {
      const remote = new RemoteModel(artifact, { url: server.url });
      const keyId = (await remote.ensureKeys(client)).keyId;
      const raw = readInputFile(sampleCsv(tmp, 5), artifact);
      const inputs = raw.map((x, i) => preprocessSample(artifact, x, `sample ${i}`));
      // one batch pass carries every sample, each in its own slot
      const res = await remote.evaluate(keyId, [client.encryptPass(inputs)], client, inputs.length);
      expect(res.rounds).to.equal(r.refreshRounds);
      const logits = client.decryptPass(res.outputs[0], inputs.length);
      await initBackend('cpu');
      const ckpt = loadCheckpoint(checkpoint);
      const flat = new Float32Array(inputs.length * inputs[0].length);
      inputs.forEach((v, i) => flat.set(v, i * v.length));
      const plain = predict(ckpt.graph, ckpt.weights, flat, inputs.length);
      const classes = artifact.preprocess.labels.length;
      logits.forEach((l, s) => l.forEach((v, c) => expect(Math.abs(v - plain[s * classes + c]), `sample ${s} logit ${c}`).to.be.below(2e-2 * Math.max(1, Math.abs(plain[s * classes + c])))));
      const metrics = await (await fetch(`${server.url}/metrics`)).text();
      expect(metrics).to.match(new RegExp(`hepoly_refresh_round_trips_total ${r.refreshRounds}\\n`));
    } finally {
      client.delete();
      await server.close();
    }
  });

  it('a character LM, batch-packed: the client turns token ids into one-hot rows as the artifact says; decrypted logits match the plaintext model', async () => {
    const text = join(tmp, 'tiny.txt');
    writeFileSync(text, 'the cat sat on the mat. the dog sat on the log.\n'.repeat(20));
    const recipe = join(tmp, 'lm.yaml');
    writeFileSync(recipe, `name: tiny-lm
data: {source: text, path: ${JSON.stringify(text)}, context: 2, split: {validation: 0.1, test: 0.1}}
model: {kind: transformer, task: lm, layers: 1, dim: 2, heads: 1, mlp_ratio: 1, attention: {kind: power-softmax, p: 2}, norm: batchnorm}
train: {epochs: 1, batch: 64, optimizer: {kind: adam, lr: 0.01}}
`);
    const checkpoint = join(tmp, 'ck-lm');
    const t = hepoly(['train', recipe, '--out', checkpoint]);
    expect(t.code, t.stderr).to.equal(0);
    // --params auto calibrates the value ranges on the one-hot rows the client encrypts (on the
    // token ids it found no ring); token packing is the default
    const auto = await exportHeArtifacts({ checkpoint, out: join(tmp, 'export-lm-auto'), refresh: 'client' });
    expect(auto.packing).to.equal('token');
    expect(auto.params.polyModulusDegree).to.be.oneOf([4096, 8192, 16384, 32768]);
    const params = join(tmp, 'params-lm.json');
    writeFileSync(params, JSON.stringify({ poly_modulus_degree: 8192, coeff_modulus_bits: [44, 30, 30, 30, 30, 44], scale_bits: 30 }));
    const r = await exportHeArtifacts({ checkpoint, out: join(tmp, 'export-lm'), params, refresh: 'client', packing: 'batch' });
    expect(r.packing).to.equal('batch');
    const artifact = loadClientArtifact(r.clientDir);
    const vocab = artifact.preprocess.labels.length;
    expect(artifact.preprocess.input_encoding).to.deep.equal({ kind: 'one-hot', vocab });
    const server = await DeployServer.start({ artifactDir: r.serverDir, port: 0, workers: 1, keysDir: join(tmp, 'keys-lm'), maxRequestBytes: 256 * 2 ** 20 });
    const client = await HEClient.create(artifact);
    try {
      expect(() => client.encryptPass([[0, vocab]])).to.throw(/input: sample 0: token 1 is \d+, expected a token id in 0\.\.\d+/);
      const contexts = [[0, 1], [vocab - 1, 2], [3, 3]];
      const remote = new RemoteModel(artifact, { url: server.url });
      const keyId = (await remote.ensureKeys(client)).keyId;
      const res = await remote.evaluate(keyId, [client.encryptPass(contexts)], client, contexts.length);
      expect(res.rounds).to.equal(r.refreshRounds).and.to.be.above(0);
      const logits = client.decryptPass(res.outputs[0], contexts.length);
      await initBackend('cpu');
      const ckpt = loadCheckpoint(checkpoint);
      const plain = predict(ckpt.graph, ckpt.weights, Float32Array.from(contexts.flat()), contexts.length);
      logits.forEach((l, s) => l.forEach((v, c) => expect(Math.abs(v - plain[s * vocab + c]), `context ${s} logit ${c}`).to.be.below(2e-2 * Math.max(1, Math.abs(plain[s * vocab + c])))));
    } finally {
      client.delete();
      await server.close();
    }
  });
});
