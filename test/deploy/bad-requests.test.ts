import { expect } from 'chai';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CkksContext, loadSeal, type CipherText } from '../../src/he/seal.js';
import { loadClientArtifact } from '../../src/deploy/artifact-load.js';
import { DeployServer } from '../../src/deploy/server/server.js';
import { HEClient, RemoteModel, type ClientArtifact } from '../../src/deploy/client/index.js';
import { encodeFrames, jsonPart } from '../../src/deploy/framing.js';
import { readInputFile } from '../../src/deploy/input-file.js';
import { preprocessSample } from '../../src/deploy/client/preprocess.js';
import { sampleCsv, tinyArtifacts, type TinyArtifacts } from './fixtures.js';

/**
 * Every bad request the issue lists gets a 4xx JSON error that says what is wrong, and the
 * server keeps serving; a worker that dies mid-request is answered with a 5xx and replaced.
 */

interface Answer {
  status: number;
  error: string;
}

async function call(url: string, method: string, path: string, body?: Uint8Array, headers: Record<string, string> = {}): Promise<Answer> {
  const h: Record<string, string> = { ...headers };
  if (body && !h['content-type']) h['content-type'] = 'application/octet-stream';
  const res = await fetch(`${url}${path}`, { method, headers: h, body: body as BodyInit | undefined });
  const text = await res.text();
  let error = '';
  try {
    error = (JSON.parse(text) as { error?: string }).error ?? '';
  } catch {
    error = '';
  }
  return { status: res.status, error };
}

describe('deploy: bad requests get a 4xx and the server keeps serving', function () {
  this.timeout(600000);
  let art: TinyArtifacts;
  let artifact: ClientArtifact;
  let server: DeployServer;
  let client: HEClient;
  let keyId: string;
  let tmp: string;
  let good: Uint8Array[];

  const meta = (over: Record<string, unknown> = {}) => ({ key_id: keyId, server_digest: artifact.server_digest, artifact_format: 1, samples: 1, ...over });
  const predictBody = (cts: Uint8Array[], over: Record<string, unknown> = {}) => encodeFrames([jsonPart(meta(over)), ...cts]);
  const expectStillServing = async () => expect((await call(server.url, 'GET', '/v1/health')).status).to.equal(200);

  before(async () => {
    art = await tinyArtifacts();
    artifact = loadClientArtifact(art.mlp.client);
    tmp = mkdtempSync(join(tmpdir(), 'hepoly-bad-'));
    server = await DeployServer.start({ artifactDir: art.mlp.server, port: 0, workers: 1, keysDir: join(tmp, 'keys'), maxRequestBytes: 2 ** 20 });
    client = await HEClient.create(artifact);
    keyId = (await new RemoteModel(artifact, { url: server.url }).ensureKeys(client)).keyId;
    const raw = readInputFile(sampleCsv(tmp, 2), artifact);
    good = client.encrypt(preprocessSample(artifact, raw[0]));
  });

  after(async () => {
    await server?.close();
    client?.delete();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('unknown key id: 404; malformed key id and path traversal: 400, no file outside the keys folder touched', async () => {
    const unknown = await call(server.url, 'POST', '/v1/predict', predictBody(good, { key_id: 'ab'.repeat(32) }));
    expect(unknown.status).to.equal(404);
    expect(unknown.error).to.match(/unknown on this server. Upload the evaluation keys with POST \/v1\/keys/);
    const sentinel = join(tmp, 'sentinel');
    writeFileSync(sentinel, 'x');
    // '/v1/keys/%2e%2e' is normalized to /v1 by the URL parser: no such route
    expect((await call(server.url, 'DELETE', '/v1/keys/%2e%2e')).status).to.equal(404);
    for (const path of ['/v1/keys/..%2Fsentinel', '/v1/keys/..%2F..%2Fetc%2Fpasswd', '/v1/keys/%2E%2E%2Fsentinel']) {
      for (const method of ['GET', 'DELETE']) {
        const r = await call(server.url, method, path);
        expect(r.status, `${method} ${path}`).to.equal(400);
        expect(r.error).to.match(/expected 64 hex digits/);
      }
    }
    const viaMeta = await call(server.url, 'POST', '/v1/predict', predictBody(good, { key_id: '../sentinel' }));
    expect(viaMeta.status).to.equal(400);
    expect(existsSync(sentinel)).to.equal(true);
    await expectStillServing();
  });

  it('keys for other parameters and malformed key uploads: 400', async () => {
    const other: ClientArtifact = { ...artifact, params: { polyModulusDegree: 4096, coeffModulusBits: [30, 20, 30], scaleBits: 20 }, slots: 2048, rotation_steps: [1, 2] };
    const stranger = await HEClient.create(other);
    try {
      const r = await call(server.url, 'POST', '/v1/keys', stranger.evaluationKeys);
      expect(r.status).to.equal(400);
      expect(r.error).to.match(/keys for other CKKS parameters \(this model uses N=8192/);
    } finally {
      stranger.delete();
    }
    const garbage = await call(server.url, 'POST', '/v1/keys', new Uint8Array(1000).fill(7));
    expect(garbage.status).to.equal(400);
    expect(garbage.error).to.match(/not a hepoly framed body/);
    const json = await call(server.url, 'POST', '/v1/keys', new TextEncoder().encode('{"keys":"AAAA"}'), { 'content-type': 'application/json' });
    expect(json.status).to.equal(415);
    await expectStillServing();
  });

  it('ciphertexts that do not deserialize or have the wrong level, scale, size or count: 400', async () => {
    const seal = await loadSeal();
    const ctx = CkksContext.create(seal, artifact.params);
    const keygen = seal.KeyGenerator(ctx.context);
    const pk = keygen.createPublicKey();
    const enc = seal.Encryptor(ctx.context, pk);
    const ev = seal.Evaluator(ctx.context);
    const coder = seal.CKKSEncoder(ctx.context);
    const save = (c: CipherText) => c.saveArray();
    const fresh = (scaleBits: number) => enc.encrypt(coder.encode(Float64Array.from([0.5, 0.25]), 2 ** scaleBits)!)!;
    try {
      const lower = seal.CipherText();
      ev.cipherModSwitchToNext(fresh(artifact.params.scaleBits), lower);
      const cube = seal.CipherText();
      ev.multiply(fresh(artifact.params.scaleBits), fresh(artifact.params.scaleBits), cube);
      const cases: [string, Uint8Array[], RegExp][] = [
        ['random bytes', [new Uint8Array(5000).fill(3)], /ciphertext 0: does not deserialize with this model's CKKS parameters/],
        ['wrong level', [save(lower)], /at level \d+, expected a fresh encryption at level/],
        ['wrong scale', [save(fresh(30))], /scale 2\^30\.00, expected 2\^40/],
        ['wrong size', [save(cube)], /size 3, expected a fresh ciphertext of size 2/],
        ['wrong count', [good[0], good[0]], /2 ciphertexts for 1 samples; this model takes 1 per sample/],
      ];
      for (const [what, cts, msg] of cases) {
        const r = await call(server.url, 'POST', '/v1/predict', predictBody(cts));
        expect(r.status, what).to.equal(400);
        expect(r.error, what).to.match(msg);
      }
      lower.delete();
      cube.delete();
    } finally {
      for (const o of [coder, ev, enc, pk, keygen]) o.delete();
      ctx.delete();
    }
    const notFramed = await call(server.url, 'POST', '/v1/predict', new Uint8Array(64));
    expect(notFramed.status).to.equal(400);
    const badMeta = await call(server.url, 'POST', '/v1/predict', encodeFrames([jsonPart({ samples: 'two' }), good[0]]));
    expect(badMeta.status).to.equal(400);
    expect(badMeta.error).to.match(/meta\.key_id/);
    await expectStillServing();
  });

  it('a client artifact of another digest or format version: 409', async () => {
    const digest = await call(server.url, 'POST', '/v1/predict', predictBody(good, { server_digest: 'cd'.repeat(32) }));
    expect(digest.status).to.equal(409);
    expect(digest.error).to.match(/exported for the model with digest cdcdcdcdcdcd, this server serves/);
    const format = await call(server.url, 'POST', '/v1/predict', predictBody(good, { artifact_format: 99 }));
    expect(format.status).to.equal(409);
    expect(format.error).to.match(/format 99, this server speaks format 1/);
    await expectStillServing();
  });

  it('a client artifact of other versions is refused before any key or ciphertext is sent', async () => {
    const older = { ...artifact, versions: { ...artifact.versions, node_seal: '5.9.9' } };
    const remote = new RemoteModel(older, { url: server.url });
    let message = '';
    try {
      await remote.describe();
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).to.match(/this client artifact is format 1, node-seal 5\.9\.9 .*Export both artifacts with one hepoly/);
    expect(remote.bytesSent).to.equal(0);
  });

  it('a body over the limit: 413 before it is stored', async () => {
    const r = await call(server.url, 'POST', '/v1/predict', new Uint8Array(2 ** 21 + 10));
    expect(r.status).to.equal(413);
    expect(r.error).to.match(/the limit is 1048576/);
    await expectStillServing();
  });

  it('expired key ids: 410; deleted ones: 404', async () => {
    const short = await DeployServer.start({ artifactDir: art.mlp.server, port: 0, workers: 1, keysDir: join(tmp, 'short-keys'), keyTtlMs: 1 });
    try {
      const up = await call(short.url, 'POST', '/v1/keys', client.evaluationKeys);
      expect(up.status).to.equal(201);
      await new Promise((r) => setTimeout(r, 20));
      const r = await call(short.url, 'POST', '/v1/predict', predictBody(good));
      expect(r.status).to.equal(410);
      expect(r.error).to.match(/expired at .* Upload the evaluation keys again/);
      expect((await call(short.url, 'GET', `/v1/keys/${keyId}`)).status).to.equal(404);
    } finally {
      await short.close();
    }
    const other = await DeployServer.start({ artifactDir: art.mlp.server, port: 0, workers: 1, keysDir: join(tmp, 'del-keys') });
    try {
      expect((await call(other.url, 'POST', '/v1/keys', client.evaluationKeys)).status).to.equal(201);
      expect((await call(other.url, 'DELETE', `/v1/keys/${keyId}`)).status).to.equal(204);
      expect((await call(other.url, 'POST', '/v1/predict', predictBody(good))).status).to.equal(404);
      expect((await call(other.url, 'DELETE', `/v1/keys/${keyId}`)).status).to.equal(404);
    } finally {
      await other.close();
    }
  });

  it('--token: a missing or wrong bearer token gets 401 on every route', async () => {
    const locked = await DeployServer.start({ artifactDir: art.mlp.server, port: 0, workers: 1, keysDir: join(tmp, 'token-keys'), token: 'sekrit' });
    try {
      for (const path of ['/v1/health', '/v1/model', '/metrics', `/v1/keys/${keyId}`]) {
        const none = await call(locked.url, 'GET', path);
        expect(none.status, path).to.equal(401);
        expect(none.error).to.match(/Authorization: missing/);
        expect((await call(locked.url, 'GET', path, undefined, { authorization: 'Bearer wrong' })).status).to.equal(401);
      }
      expect((await call(locked.url, 'POST', '/v1/predict', predictBody(good))).status).to.equal(401);
      expect((await call(locked.url, 'GET', '/v1/health', undefined, { authorization: 'Bearer sekrit' })).status).to.equal(200);
      const remote = new RemoteModel(artifact, { url: locked.url, token: 'sekrit' });
      expect((await remote.describe()).digest).to.equal(artifact.server_digest);
    } finally {
      await locked.close();
    }
  });

  it('a worker that dies mid-request: 500, replaced, the next request is answered correctly', async () => {
    const body = predictBody(good);
    const pending = call(server.url, 'POST', '/v1/predict', body);
    for (let i = 0; i < 400 && !(server.pool.busyWorkers === 1 && server.pool.liveWorkers().length === 1); i++) await new Promise((r) => setTimeout(r, 25));
    expect(server.pool.liveWorkers()).to.have.length(1);
    await server.pool.liveWorkers()[0].terminate();
    const died = await pending;
    expect(died.status).to.equal(500);
    expect(died.error).to.match(/worker died .* replaced for the next request/);
    const remote = new RemoteModel(artifact, { url: server.url });
    const ok = await remote.evaluate(keyId, [good]);
    const logits = client.decrypt(ok.outputs[0]);
    expect(logits.length).to.equal(artifact.preprocess.labels.length);
    expect(logits.every((v) => Number.isFinite(v) && Math.abs(v) < 100)).to.equal(true);
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    expect(metrics).to.match(/hepoly_workers_replaced_total 1\n/);
    expect(metrics).to.match(/hepoly_requests_total\{route="\/v1\/predict",status="400"\} \d+/);
    expect(metrics).to.match(/hepoly_queue_depth 0\n/);
  });
});
