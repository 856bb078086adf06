import { expect } from 'chai';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { exportHeArtifacts } from '../../src/deploy/export.js';
import { loadClientArtifact } from '../../src/deploy/artifact-load.js';
import { HEClient, RemoteModel, decodeFrames, encodeFrames, preprocessSample, type ClientArtifact } from '../../src/deploy/client/index.js';
import { jsonPart, parseJsonPart } from '../../src/deploy/framing.js';
import { readInputFile } from '../../src/deploy/input-file.js';
import { loadCheckpoint } from '../../src/train/checkpoint.js';
import { initBackend } from '../../src/train/backend.js';
import { predict } from '../../src/models/tf-interpreter.js';
import { sampleCsv, serveProcess, stopProcess, tinyArtifacts } from './fixtures.js';
import { restoreFastestBackend } from '../helpers/backend.js';

/**
 * Refresh sessions survive a kill -9: the tiny MLP exported with `--refresh client` on a
 * 1-level N=8192 chain (2 rounds), served by `hepoly serve` as its own process. One round is answered, the
 * server is killed with SIGKILL and started again on the same --keys folder, and the session
 * goes on from the round the client holds to the end (a round whose answer was lost to a second
 * kill is sent again and evaluated again); the decrypted logits match the
 * plaintext model. Sessions expired while the server was down are gone (404), one past its
 * --session-ttl answers 410, and the server keeps serving.
 */

const body = (round: number, cts: Uint8Array[]) => encodeFrames([jsonPart({ round }), ...cts]);

async function post(url: string, path: string, bytes: Uint8Array): Promise<{ status: number; error: string; parts: Uint8Array[] }> {
  const res = await fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: bytes as BodyInit });
  const got = new Uint8Array(await res.arrayBuffer());
  if (!res.ok) return { status: res.status, error: (JSON.parse(new TextDecoder().decode(got)) as { error: string }).error, parts: [] };
  return { status: res.status, error: '', parts: decodeFrames(got, 'reply').map((p) => Uint8Array.from(p)) };
}

describe('deploy: refresh sessions survive a server restart and kill -9', function () {
  // tests here force the cpu backend; later files in this mocha worker get the fastest back
  after(restoreFastestBackend);
  this.timeout(600000);
  let tmp: string;
  let serverDir: string;
  let keysDir: string;
  let artifact: ClientArtifact;
  let client: HEClient;
  let raw: Float64Array[];
  let inputs: Float64Array[];
  let plain: Float32Array;
  let child: ChildProcess | undefined;

  // one server at a time: a test that starts one stops the one before (else it outlives the run)
  const serveOn = async (keys: string, ...extra: string[]) => {
    if (child) await stopProcess(child, 'SIGKILL');
    const s = await serveProcess([serverDir, '--keys', keys, '--workers', '1', ...extra]);
    child = s.child;
    return s.url;
  };
  const serve = (...extra: string[]) => serveOn(keysDir, ...extra);

  before(async () => {
    const art = await tinyArtifacts();
    tmp = mkdtempSync(join(tmpdir(), 'hepoly-session-restart-'));
    const params = join(tmp, 'params.json');
    writeFileSync(params, JSON.stringify({ poly_modulus_degree: 8192, coeff_modulus_bits: [45, 30, 45], scale_bits: 30 }));
    const r = await exportHeArtifacts({ checkpoint: art.mlp.checkpoint, out: join(tmp, 'export'), params, refresh: 'client' });
    // one level: two refresh rounds, so a lost answer of a round that is not the last can be tried
    expect(r.refreshRounds).to.be.at.least(2);
    serverDir = r.serverDir;
    keysDir = join(tmp, 'keys');
    artifact = loadClientArtifact(r.clientDir);
    client = await HEClient.create(artifact);
    raw = readInputFile(sampleCsv(tmp, 2), artifact);
    inputs = raw.map((x, i) => preprocessSample(artifact, x, `sample ${i}`));
    await initBackend('cpu');
    const ckpt = loadCheckpoint(art.mlp.checkpoint);
    plain = predict(ckpt.graph, ckpt.weights, Float64ToFloat32(inputs[0]), 1);
  });

  after(async () => {
    client?.delete();
    if (child) await stopProcess(child, 'SIGKILL');
    rmSync(tmp, { recursive: true, force: true });
  });

  it('one round, kill -9, restart on the same --keys: the session continues to the end and agrees with plaintext', async () => {
    let url = await serve();
    const keyId = (await new RemoteModel(artifact, { url }).ensureKeys(client)).keyId;
    const start = encodeFrames([jsonPart({ key_id: keyId, server_digest: artifact.server_digest, artifact_format: 1, samples: 1 }), ...client.encrypt(inputs[0])]);
    const first = await post(url, '/v1/predict', start);
    expect(first.status, first.error).to.equal(200);
    const head = parseJsonPart(first.parts[0], 'reply') as { state: string; session_id: string; round: number; rounds: number };
    expect(head).to.include({ state: 'refresh', round: 1 });
    expect(readdirSync(join(keysDir, 'sessions'))).to.deep.equal([`${head.session_id}.json`]);

    await stopProcess(child!, 'SIGKILL');
    url = await serve();
    let handed = first.parts.slice(1);
    for (let round = 1; round <= head.rounds; round++) {
      const sent = body(round, client.refresh(handed));
      let reply = await post(url, `/v1/sessions/${head.session_id}/continue`, sent);
      expect(reply.status, `round ${round}: ${reply.error}`).to.equal(200);
      if (round === 1) {
        // its answer lost (as to a kill after the round was stored): the same round again is evaluated again
        await stopProcess(child!, 'SIGKILL');
        url = await serve();
        reply = await post(url, `/v1/sessions/${head.session_id}/continue`, sent);
        expect(reply.status, `round 1 again: ${reply.error}`).to.equal(200);
        expect(parseJsonPart(reply.parts[0], 'reply')).to.include({ state: 'refresh', round: 2 });
        const skipBack = await post(url, `/v1/sessions/${head.session_id}/continue`, body(0, []));
        expect(skipBack.status, 'only the last answered round can be sent again').to.be.oneOf([400, 409]);
      }
      const meta = parseJsonPart(reply.parts[0], 'reply') as { state: string };
      handed = reply.parts.slice(1);
      if (round < head.rounds) expect(meta.state).to.equal('refresh');
      else expect(meta).to.include({ state: 'done', samples: 1 });
    }
    const logits = client.decrypt(handed);
    logits.forEach((v, c) => expect(Math.abs(v - plain[c]), `logit ${c}`).to.be.below(1e-2));
    expect(readdirSync(join(keysDir, 'sessions')), 'a finished session leaves no file').to.deep.equal([]);
    const gone = await post(url, `/v1/sessions/${head.session_id}/continue`, body(1, client.refresh(first.parts.slice(1))));
    expect(gone.status).to.equal(404);
  });

  it('a session that expired while the server was down is dropped (404); one past --session-ttl answers 410; the server keeps serving', async () => {
    await stopProcess(child!, 'SIGKILL');
    let url = await serve('--session-ttl', '1');
    const keyId = (await new RemoteModel(artifact, { url }).ensureKeys(client)).keyId;
    const start = encodeFrames([jsonPart({ key_id: keyId, server_digest: artifact.server_digest, artifact_format: 1, samples: 1 }), ...client.encrypt(inputs[0])]);
    const open = async () => {
      const r = await post(url, '/v1/predict', start);
      expect(r.status, r.error).to.equal(200);
      return { id: (parseJsonPart(r.parts[0], 'reply') as { session_id: string }).session_id, fresh: client.refresh(r.parts.slice(1)) };
    };
    const late = await open();
    await new Promise((r) => setTimeout(r, 1500));
    const expired = await post(url, `/v1/sessions/${late.id}/continue`, body(1, late.fresh));
    expect(expired.status).to.equal(410);
    expect(expired.error).to.match(/expired .*POST \/v1\/predict/);

    const down = await open();
    const file = join(keysDir, 'sessions', `${down.id}.json`);
    expect(JSON.parse(readFileSync(file, 'utf8'))).to.include({ key_id: keyId, next: 1 });
    await stopProcess(child!, 'SIGKILL');
    await new Promise((r) => setTimeout(r, 1500));
    url = await serve();
    const dropped = await post(url, `/v1/sessions/${down.id}/continue`, body(1, down.fresh));
    expect(dropped.status).to.equal(404);
    expect(dropped.error).to.match(/unknown on this server/);
    expect(readdirSync(join(keysDir, 'sessions'))).to.not.include(`${down.id}.json`);
    expect((await fetch(`${url}/v1/health`)).status).to.equal(200);
    expect((await post(url, '/v1/predict', start)).status, 'a new request after all that').to.equal(200);
  });

  /**
   * The library client on its own (RemoteModel's retries): its `fetch` option kills the served
   * process (SIGKILL) just after the first continue went out, and `onServerDown` brings it back
   * 0.5 s later on the same port, with `keys` as its --keys folder.
   */
  const killDuringFirstContinue = (port: string, keys: string) => {
    const state: { killed: boolean; back?: Promise<void> } = { killed: false };
    const killing: typeof fetch = (input, init) => {
      const sent = fetch(input, init);
      if (!state.killed && String(input).endsWith('/continue')) {
        state.killed = true;
        state.back = (async () => {
          await sleep(20); // the round is on its way or being evaluated
          await stopProcess(child!, 'SIGKILL');
          await sleep(500);
          await serveOn(keys, '--port', port);
        })();
      }
      return sent;
    };
    return { state, fetch: killing };
  };

  it('library client: kill -9 in the middle of a multi-round predict(), restart after 0.5 s on the same port and --keys: the same call completes on its own', async () => {
    await stopProcess(child!, 'SIGKILL');
    const url = await serve();
    const k = killDuringFirstContinue(new URL(url).port, keysDir);
    const remote = new RemoteModel(artifact, { url, fetch: k.fetch, retry: { tries: 12, baseMs: 200 } });
    const { keyId } = await remote.ensureKeys(client);
    const got = await remote.predict(client, keyId, [raw[0]]);
    await k.state.back;
    expect(k.state.killed, 'the server was killed mid-request').to.equal(true);
    expect(remote.retries, 'requests sent again').to.be.at.least(1);
    expect(remote.keyUploads, 'the key id survived the kill').to.equal(0);
    got.logits[0].forEach((v, c) => expect(Math.abs(v - plain[c]), `logit ${c}`).to.be.below(1e-2));
  });

  it('library client: restarted on an empty --keys folder, the session and key id are gone: it starts over and uploads its keys again, once', async () => {
    await stopProcess(child!, 'SIGKILL');
    const url = await serve();
    const k = killDuringFirstContinue(new URL(url).port, join(tmp, 'keys-empty'));
    const remote = new RemoteModel(artifact, { url, fetch: k.fetch, retry: { tries: 12, baseMs: 200 } });
    const { keyId, uploaded } = await remote.ensureKeys(client);
    expect(uploaded, 'the keys are on the first server already').to.equal(false);
    const got = await remote.predict(client, keyId, [raw[0]]);
    await k.state.back;
    expect(remote.restarts, 'started over from POST /v1/predict').to.equal(1);
    expect(remote.keyUploads, 'one re-upload to the server that lost them').to.equal(1);
    expect(readdirSync(join(tmp, 'keys-empty')), 'filed on the restarted server').to.include(keyId);
    got.logits[0].forEach((v, c) => expect(Math.abs(v - plain[c]), `logit ${c}`).to.be.below(1e-2));
  });

  it('library client with retry: false: a dead server is one failed try, and the message names the URL and says it is unreachable', async () => {
    const url = await serve();
    const remote = new RemoteModel(artifact, { url, retry: false });
    const { keyId } = await remote.ensureKeys(client);
    await stopProcess(child!, 'SIGKILL');
    const err = await remote.predict(client, keyId, [raw[0]]).then(() => null, (e: Error) => e);
    expect(err?.message).to.match(new RegExp(`^${url.replace(/[.]/g, '\\.')}: the server is unreachable: POST /v1/predict failed \\(fetch failed.*\\), tried once \\(retry: false\\)`));
    expect(remote.retries).to.equal(0);
  });
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function Float64ToFloat32(x: Float64Array): Float32Array {
  return Float32Array.from(x);
}
