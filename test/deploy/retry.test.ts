import { expect } from 'chai';
import { RemoteError, RemoteModel, type ClientArtifact } from '../../src/deploy/client/index.js';
import { backoffMs, connectionFailure, retryPolicy } from '../../src/deploy/client/retry.js';
import { decodeFrames, encodeFrames, jsonPart, parseJsonPart } from '../../src/deploy/framing.js';

/**
 * RemoteModel's retries against a scripted server (its `fetch` option): which failures are sent
 * again (connection errors, 502/503) and which never are (4xx, 500); a refresh round sent again
 * under its round number with the same bytes; a lost session started over from POST
 * /v1/predict; keys a server no longer knows uploaded again once. No SEAL, no sockets: the
 * served path is test/deploy/session-restart.test.ts (a real `hepoly serve` killed mid-request).
 */

const URL_ = 'http://127.0.0.1:9';
const artifact = { server_digest: 'd'.repeat(64), output: { ciphertexts: 1 }, refresh_rounds: 2, preprocess: { labels: ['a', 'b'] } } as unknown as ClientArtifact;
const fast = { tries: 4, baseMs: 1, maxMs: 2 };
const SESSION = 'a'.repeat(32);

interface Seen {
  method: string;
  path: string;
  body: Uint8Array;
}

function refused(): Error {
  return Object.assign(new TypeError('fetch failed'), { cause: Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), { code: 'ECONNREFUSED' }) });
}

const json = (status: number, o: unknown) => new Response(JSON.stringify(o), { status, headers: { 'content-type': 'application/json' } });
const frames = (head: unknown, cts: Uint8Array[]) => new Response(encodeFrames([jsonPart(head), ...cts]) as BodyInit, { status: 200 });
const refresh = (round: number, cts: Uint8Array[]) => frames({ state: 'refresh', session_id: SESSION, round, rounds: 2, samples: 1, ms: [1] }, cts);
const output = (cts: Uint8Array[]) => frames({ state: 'done', samples: 1, ms: [2] }, cts);

/** A fetch that records each request and answers with `answer(request, n)` (n: requests so far, from 0). */
function scripted(answer: (r: Seen, n: number) => Response | Error): { fetch: typeof fetch; seen: Seen[] } {
  const seen: Seen[] = [];
  const f = async (input: string | URL | Request, init?: RequestInit) => {
    const r = { method: init?.method ?? 'GET', path: new URL(String(input)).pathname, body: init?.body ? Uint8Array.from(init.body as Uint8Array) : new Uint8Array(0) };
    seen.push(r);
    const a = answer(r, seen.length - 1);
    if (a instanceof Error) throw a;
    return a;
  };
  return { fetch: f as typeof fetch, seen };
}

/** Refreshing marks each ciphertext (appends 7) so what goes back can be told from what came. */
const marker = { refresh: (cts: Uint8Array[]) => cts.map((c) => Uint8Array.from([...c, 7])) };
const roundOf = (r: Seen) => (parseJsonPart(decodeFrames(r.body, 'sent')[0], 'sent') as { round: number }).round;

describe('deploy: RemoteModel sends again after connection errors and restarts', () => {
  it('the policy: false is one try; waits double from baseMs to maxMs within +-25%; bad values are refused naming the field', () => {
    expect(retryPolicy(false).tries).to.equal(1);
    expect(retryPolicy({ tries: 3 })).to.include({ tries: 3, baseMs: 200, maxMs: 5000 });
    const p = { tries: 9, baseMs: 100, maxMs: 1000 };
    expect([1, 2, 3, 4, 5].map((a) => backoffMs(p, a, () => 0.5))).to.deep.equal([100, 200, 400, 800, 1000]);
    expect(backoffMs(p, 1, () => 0)).to.equal(75);
    expect(backoffMs(p, 1, () => 1)).to.equal(125);
    expect(() => retryPolicy({ tries: 0 })).to.throw(/retry\.tries 0: expected an integer of at least 1/);
    expect(() => retryPolicy({ baseMs: -1 })).to.throw(/retry\.baseMs -1/);
    expect(connectionFailure(refused()).cause).to.equal('fetch failed: ECONNREFUSED: connect ECONNREFUSED 127.0.0.1:9');
    expect(connectionFailure(Object.assign(new Error('x'), { name: 'AbortError' })).abort).to.equal(true);
  });

  it('connection refused twice, then the server answers: the same request succeeds, 2 retries counted', async () => {
    const s = scripted((_, n) => (n < 2 ? refused() : json(200, { key_id: 'k' })));
    const remote = new RemoteModel(artifact, { url: URL_, fetch: s.fetch, retry: fast });
    expect(await remote.hasKeys('k'.repeat(64))).to.equal(true);
    expect(s.seen).to.have.length(3);
    expect(remote.retries).to.equal(2);
  });

  it('retry: false: one try, and the message names the server URL and says it is unreachable', async () => {
    const s = scripted(() => refused());
    const remote = new RemoteModel(artifact, { url: URL_, fetch: s.fetch, retry: false });
    const err = await remote.hasKeys('k'.repeat(64)).then(() => null, (e: Error) => e);
    expect(s.seen).to.have.length(1);
    expect(err?.message).to.match(/^http:\/\/127\.0\.0\.1:9: the server is unreachable: GET \/v1\/keys\/k+ failed \(fetch failed: ECONNREFUSED.*\), tried once \(retry: false\)\. Check --server/);
  });

  it('every try refused: the message says how many tries over how long', async () => {
    const s = scripted(() => refused());
    const err = await new RemoteModel(artifact, { url: URL_, fetch: s.fetch, retry: fast }).describe().then(() => null, (e: Error) => e);
    expect(s.seen).to.have.length(4);
    expect(err?.message).to.match(/the server is unreachable: GET \/v1\/model failed \(fetch failed: ECONNREFUSED.*\), after 4 tries over \d+\.\d s/);
  });

  it('503 and 502 are sent again; a 4xx and a 500 never are (RemoteError with the server message)', async () => {
    const busy = scripted((_, n) => (n === 0 ? json(503, { error: 'busy' }) : n === 1 ? new Response('bad gateway', { status: 502 }) : json(201, { key_id: 'f'.repeat(64) })));
    const r1 = new RemoteModel(artifact, { url: URL_, fetch: busy.fetch, retry: fast });
    expect(await r1.uploadKeys({ keyId: 'f'.repeat(64), evaluationKeys: new Uint8Array(8) })).to.equal('f'.repeat(64));
    expect(busy.seen).to.have.length(3);
    for (const status of [400, 401, 413, 500]) {
      const s = scripted(() => json(status, { error: `nope ${status}` }));
      const err = await new RemoteModel(artifact, { url: URL_, fetch: s.fetch, retry: fast }).uploadKeys({ keyId: 'x', evaluationKeys: new Uint8Array(8) }).then(() => null, (e: unknown) => e);
      expect(s.seen, `status ${status}`).to.have.length(1);
      expect(err).to.be.instanceOf(RemoteError);
      expect((err as RemoteError).status).to.equal(status);
      expect((err as Error).message).to.contain(`POST /v1/keys: ${status} nope ${status}`);
    }
  });

  it('a continue cut off mid-round is sent again with the same round and the same bytes, and the request completes', async () => {
    const s = scripted((r, n) => {
      if (r.path === '/v1/predict') return refresh(1, [Uint8Array.of(1)]);
      if (n === 1) return Object.assign(new TypeError('fetch failed'), { cause: Object.assign(new Error('other side closed'), { code: 'UND_ERR_SOCKET' }) });
      return roundOf(r) === 1 ? refresh(2, [Uint8Array.of(2)]) : output([Uint8Array.of(3)]);
    });
    const remote = new RemoteModel(artifact, { url: URL_, fetch: s.fetch, retry: fast });
    const r = await remote.evaluate('k'.repeat(64), [[Uint8Array.of(0)]], marker);
    expect(s.seen.map((x) => x.path)).to.deep.equal(['/v1/predict', ...Array(3).fill(`/v1/sessions/${SESSION}/continue`)]);
    expect(s.seen.slice(1).map(roundOf)).to.deep.equal([1, 1, 2]);
    expect(s.seen[2].body).to.deep.equal(s.seen[1].body);
    expect(r.outputs).to.deep.equal([[Uint8Array.of(3)]]);
    expect(r.rounds).to.equal(2);
    expect(remote.retries).to.equal(1);
  });

  it('the session is gone after a restart (404 to a continue): the request starts over from POST /v1/predict with the same inputs', async () => {
    let predicts = 0;
    const s = scripted((r) => {
      if (r.path === '/v1/predict') return refresh(1, [Uint8Array.of(10 + predicts++)]);
      if (predicts === 1) return json(404, { error: `session ${SESSION}: unknown on this server` });
      return roundOf(r) === 1 ? refresh(2, [Uint8Array.of(2)]) : output([Uint8Array.of(5)]);
    });
    const remote = new RemoteModel(artifact, { url: URL_, fetch: s.fetch, retry: fast });
    const r = await remote.evaluate('k'.repeat(64), [[Uint8Array.of(0)]], marker);
    const predictBodies = s.seen.filter((x) => x.path === '/v1/predict').map((x) => x.body);
    expect(predictBodies).to.have.length(2);
    expect(predictBodies[1]).to.deep.equal(predictBodies[0]);
    expect(r.outputs).to.deep.equal([[Uint8Array.of(5)]]);
    expect(remote.restarts).to.equal(1);
  });

  it('a 409 to a round sent again (the server moved past it) deletes the session and starts over; a 409 to a first send is an error', async () => {
    let predicts = 0;
    const s = scripted((r, n) => {
      if (r.path === '/v1/predict') return refresh(1, [Uint8Array.of(predicts++)]);
      if (r.method === 'DELETE') return new Response(null, { status: 204 });
      if (predicts === 1) return n === 1 ? refused() : json(409, { error: 'expects round 2' });
      return output([Uint8Array.of(6)]);
    });
    const artifact1 = { ...artifact, refresh_rounds: 1 } as ClientArtifact;
    const r = await new RemoteModel(artifact1, { url: URL_, fetch: s.fetch, retry: fast }).evaluate('k'.repeat(64), [[Uint8Array.of(0)]], marker);
    expect(s.seen.map((x) => `${x.method} ${x.path}`)).to.include(`DELETE /v1/sessions/${SESSION}`);
    expect(r.outputs).to.deep.equal([[Uint8Array.of(6)]]);

    const once = scripted((x) => (x.path === '/v1/predict' ? refresh(1, [Uint8Array.of(1)]) : json(409, { error: 'round 1 is being evaluated' })));
    const err = await new RemoteModel(artifact1, { url: URL_, fetch: once.fetch, retry: fast }).evaluate('k'.repeat(64), [[Uint8Array.of(0)]], marker).then(() => null, (e: Error) => e);
    expect(err?.message).to.contain('409 round 1 is being evaluated');
  });

  it('a key id the server no longer knows: the keys are uploaded again once and the request sent again; a second 404 is the error', async () => {
    const keys = { keyId: 'e'.repeat(64), evaluationKeys: Uint8Array.of(4, 4), refresh: (c: Uint8Array[]) => c };
    let uploads = 0;
    const s = scripted((r) => {
      if (r.path === '/v1/keys') {
        uploads++;
        return json(201, { key_id: keys.keyId });
      }
      return uploads ? output([Uint8Array.of(8)]) : json(404, { error: 'key id eeee...: unknown on this server. Upload the evaluation keys with POST /v1/keys' });
    });
    const remote = new RemoteModel(artifact, { url: URL_, fetch: s.fetch, retry: fast });
    const r = await remote.evaluate(keys.keyId, [[Uint8Array.of(0)]], keys);
    expect(s.seen.map((x) => x.path)).to.deep.equal(['/v1/predict', '/v1/keys', '/v1/predict']);
    expect(s.seen[1].body).to.deep.equal(keys.evaluationKeys);
    expect(remote.keyUploads).to.equal(1);
    expect(r.outputs).to.deep.equal([[Uint8Array.of(8)]]);

    const lost = scripted((x) => (x.path === '/v1/keys' ? json(201, { key_id: keys.keyId }) : json(404, { error: 'key id eeee...: unknown on this server' })));
    const err = await new RemoteModel(artifact, { url: URL_, fetch: lost.fetch, retry: fast }).evaluate(keys.keyId, [[Uint8Array.of(0)]], keys).then(() => null, (e: Error) => e);
    expect(lost.seen.map((x) => x.path)).to.deep.equal(['/v1/predict', '/v1/keys', '/v1/predict']);
    expect(err).to.be.instanceOf(RemoteError);
    expect(err?.message).to.contain('404 key id eeee...: unknown on this server');
  });

  it('a url that is not one is refused at construction, not retried as an outage', () => {
    expect(() => new RemoteModel(artifact, { url: '127.0.0.1 8080' })).to.throw(/option url "127\.0\.0\.1 8080": not a URL/);
  });
});
