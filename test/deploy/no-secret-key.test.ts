import { expect } from 'chai';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { CkksContext, loadSeal } from '../../src/he/seal.js';
import { loadClientArtifact } from '../../src/deploy/artifact-load.js';
import { DeployServer } from '../../src/deploy/server/server.js';
import { HEClient, RemoteModel, decodeFrames } from '../../src/deploy/client/index.js';
import { readInputFile } from '../../src/deploy/input-file.js';
import { sampleCsv, tinyArtifacts } from './fixtures.js';

/**
 * The server never holds a secret key: after a key upload and a prediction, every byte string
 * reachable from the server object and every file (and framed part) in its keys folder fails
 * to load as a SEAL SecretKey, while the client's real secret key loads (the positive
 * control: the check can say yes).
 */

function byteStrings(root: unknown, skip: Set<unknown>): Uint8Array[] {
  const seen = new Set<unknown>();
  const found: Uint8Array[] = [];
  const stack = [root];
  while (stack.length) {
    const v = stack.pop();
    if (v === null || typeof v !== 'object' || seen.has(v) || skip.has(v)) continue;
    // a path to the process's globals would walk every module loaded: the server holds none
    if (v === globalThis || v === process) throw new Error('the walk reached globalThis or process: the server keeps a reference it should not');
    seen.add(v);
    if (seen.size > 200_000) throw new Error(`more than 200000 objects reachable from the server: a reference to something global?`);
    if (v instanceof Uint8Array) found.push(v);
    if (ArrayBuffer.isView(v) || v instanceof ArrayBuffer || v instanceof Worker) continue;
    if (v instanceof Map) for (const [k, x] of v) stack.push(k, x);
    else if (v instanceof Set) for (const x of v) stack.push(x);
    else for (const k of Reflect.ownKeys(v)) stack.push((v as Record<string | symbol, unknown>)[k]);
  }
  return found;
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? filesUnder(p) : [p];
  });
}

describe('deploy: nothing the server holds is a secret key', function () {
  this.timeout(300000);

  it('memory and keys folder: no blob deserializes as a SecretKey; the client secret does (positive control)', async () => {
    const art = await tinyArtifacts();
    const artifact = loadClientArtifact(art.mlp.client);
    const tmp = mkdtempSync(join(tmpdir(), 'hepoly-nosk-'));
    const server = await DeployServer.start({ artifactDir: art.mlp.server, port: 0, workers: 1, keysDir: join(tmp, 'keys') });
    const client = await HEClient.create(artifact);
    const seal = await loadSeal();
    const ctx = CkksContext.create(seal, artifact.params);
    try {
      const remote = new RemoteModel(artifact, { url: server.url });
      const { keyId } = await remote.ensureKeys(client);
      const raw = readInputFile(sampleCsv(tmp, 2), artifact);
      await remote.predict(client, keyId, raw);

      const loadsAsSecret = (bytes: Uint8Array) => {
        const sk = seal.SecretKey();
        try {
          sk.loadArray(ctx.context, bytes);
          return true;
        } catch {
          return false;
        } finally {
          sk.delete();
        }
      };
      // positive control: the owner's secret key is recognized
      expect(loadsAsSecret(client.exportKeys().secretKey)).to.equal(true);

      // what the server object holds: artifact, key store (with its cache), worker pool, metrics.
      // Not walked: its node:http server (sockets, node internals) and its own SEAL instance,
      // which serves the wire checks and holds a context only (its wasm heap would be one blob)
      const internals = server as unknown as { checks: { ctx: CkksContext }; http: object };
      expect(Object.keys(internals.checks).sort()).to.deep.equal(['ctx', 'inputCts', 'rotationSteps']);
      expect(Object.keys(server).sort()).to.deep.equal(['artifact', 'checks', 'evaluation', 'http', 'keys', 'metrics', 'pool', 'queued', 'url']);
      const inMemory = byteStrings(server, new Set([internals.checks, internals.http]));
      const onDisk = filesUnder(join(tmp, 'keys')).map((f) => new Uint8Array(readFileSync(f)));
      expect(onDisk.length).to.equal(2);
      const candidates = [...inMemory, ...onDisk].filter((b) => b.length >= 64);
      // framed blobs (the stored key upload) are also tried part by part
      const parts = candidates.flatMap((b) => {
        try {
          return decodeFrames(b, 'blob');
        } catch {
          return [];
        }
      });
      expect(parts.length).to.be.at.least(3);
      const all = [...candidates, ...parts];
      expect(all.some((b) => b.length > 1e6), 'the evaluation keys are among the blobs checked').to.equal(true);
      const secrets = all.filter(loadsAsSecret);
      expect(secrets, `${secrets.length} of ${all.length} blobs load as a secret key`).to.have.length(0);
    } finally {
      ctx.delete();
      client.delete();
      await server.close();
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});
