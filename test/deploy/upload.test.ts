import { expect } from 'chai';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadClientArtifact } from '../../src/deploy/artifact-load.js';
import { DeployServer } from '../../src/deploy/server/server.js';
import { HEClient, RemoteModel, encodeFrames } from '../../src/deploy/client/index.js';
import { tinyArtifacts } from './fixtures.js';

/**
 * Key uploads stream to the keys folder (hashed on the way, never buffered whole) under an
 * explicit limit: a body over it gets 413 whether it declares its length or not, an upload
 * that breaks off leaves nothing behind, and the server goes on serving.
 */

/** An upload sent in chunks without Content-Length (chunked encoding): the limit is met mid-stream. */
function chunkedUpload(url: string, total: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}/v1/keys`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' } }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    const chunk = Buffer.alloc(64 * 1024, 7);
    let sent = 0;
    const pump = () => {
      while (sent < total) {
        sent += chunk.length;
        if (!req.write(chunk)) return void req.once('drain', pump);
      }
      req.end();
    };
    pump();
  });
}

/** Headers promising `declared` bytes, then `sent` bytes and a closed socket. */
function truncatedUpload(url: string, declared: number, sent: number): Promise<void> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const sock = connect(Number(port), hostname, () => {
      sock.write(`POST /v1/keys HTTP/1.1\r\nHost: ${hostname}\r\nContent-Type: application/octet-stream\r\nContent-Length: ${declared}\r\n\r\n`);
      sock.write(Buffer.alloc(sent, 1), () => setTimeout(() => (sock.destroy(), resolve()), 200));
    });
    sock.on('error', reject);
  });
}

describe('deploy: streamed key uploads with explicit body limits', function () {
  this.timeout(300000);
  let tmp: string;
  let server: DeployServer;
  let client: HEClient;
  const keysDir = () => join(tmp, 'keys');
  // key folders and the refresh sessions' folder (session-files.ts) are no leftovers
  const leftovers = () => readdirSync(keysDir()).filter((n) => !/^[0-9a-f]{64}$/.test(n) && n !== 'sessions');
  const status400s = async () => Number(/hepoly_requests_total\{route="\/v1\/keys",status="400"\} (\d+)/.exec(await (await fetch(`${server.url}/metrics`)).text())?.[1] ?? 0);

  before(async () => {
    const art = await tinyArtifacts();
    const artifact = loadClientArtifact(art.mlp.client);
    client = await HEClient.create(artifact);
    tmp = mkdtempSync(join(tmpdir(), 'hepoly-upload-'));
    // the limit sits just above this client's real keys
    server = await DeployServer.start({ artifactDir: art.mlp.server, port: 0, workers: 1, keysDir: keysDir(), maxKeyBytes: client.evaluationKeys.length + 1024 });
  });

  after(async () => {
    client?.delete();
    await server?.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('keys within the limit are streamed to disk, filed under their sha256, and a second upload renews them', async () => {
    const remote = new RemoteModel(loadClientArtifact((await tinyArtifacts()).mlp.client), { url: server.url });
    expect(await remote.uploadKeys(client)).to.equal(client.keyId);
    expect(Buffer.compare(readFileSync(join(keysDir(), client.keyId, 'keys.bin')), Buffer.from(client.evaluationKeys))).to.equal(0);
    const first = JSON.parse(readFileSync(join(keysDir(), client.keyId, 'meta.json'), 'utf8')) as { expires_at: string };
    await new Promise((r) => setTimeout(r, 20));
    expect(await remote.uploadKeys(client)).to.equal(client.keyId);
    const second = JSON.parse(readFileSync(join(keysDir(), client.keyId, 'meta.json'), 'utf8')) as { expires_at: string };
    expect(Date.parse(second.expires_at)).to.be.above(Date.parse(first.expires_at));
    expect(leftovers()).to.deep.equal([]);
  });

  it('a body over the limit gets 413, declared or met mid-stream, and nothing is stored', async () => {
    const limit = client.evaluationKeys.length + 1024;
    const declared = await fetch(`${server.url}/v1/keys`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: new Uint8Array(limit + 1) });
    expect(declared.status).to.equal(413);
    expect(((await declared.json()) as { error: string }).error).to.match(new RegExp(`POST /v1/keys: the body has ${limit + 1} bytes or more, the limit is ${limit}`));
    const streamed = await chunkedUpload(server.url, limit + 256 * 1024);
    expect(streamed.status).to.equal(413);
    expect(streamed.body).to.match(/the limit is \d+/);
    expect(leftovers()).to.deep.equal([]);
    expect(server.keys.count()).to.equal(1);
  });

  it('an upload that breaks off, or a complete body with truncated frames, leaves no file and the server keeps serving', async () => {
    const before = await status400s();
    await truncatedUpload(server.url, client.evaluationKeys.length, 4096);
    await new Promise((r) => setTimeout(r, 300));
    expect(leftovers(), 'the partial upload was removed').to.deep.equal([]);
    expect(await status400s()).to.equal(before + 1);
    const cut = encodeFrames([new Uint8Array(10), new Uint8Array(10), new Uint8Array(10)]).slice(0, 30);
    const framed = await fetch(`${server.url}/v1/keys`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: cut });
    expect(framed.status).to.equal(400);
    expect(((await framed.json()) as { error: string }).error).to.match(/POST \/v1\/keys: not a hepoly framed body \(part 1 claims 10 bytes, 4 remain/);
    expect(leftovers()).to.deep.equal([]);
    expect(server.keys.count()).to.equal(1);
    expect((await fetch(`${server.url}/v1/health`)).status).to.equal(200);
  });
});
