import { expect } from 'chai';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { chromium, type Browser } from 'playwright-core';
import { buildBrowserBundle } from '../../src/browser/build.js';
import { loadClientArtifact } from '../../src/deploy/artifact-load.js';
import { DeployServer } from '../../src/deploy/server/server.js';
import { readInputFile } from '../../src/deploy/input-file.js';
import { preprocessSample } from '../../src/deploy/client/preprocess.js';
import { loadCheckpoint } from '../../src/train/checkpoint.js';
import { initBackend } from '../../src/train/backend.js';
import { predict } from '../../src/models/tf-interpreter.js';
import { sampleCsv, tinyArtifacts, trainTinyVit } from './fixtures.js';
import { exportHeArtifacts } from '../../src/deploy/export.js';
import { restoreFastestBackend } from '../helpers/backend.js';

/**
 * The client library in a real headless browser (Debian's chromium driven by playwright-core):
 * the page loads the esbuild bundle (node-seal's web build inside), makes keys, encrypts a
 * sample, calls a `hepoly serve` server started here, decrypts, and its logits must be the
 * plaintext model's. Without chromium the test fails and says how to install it.
 */

function chromiumPath(): string {
  const candidates = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser'].filter((p): p is string => !!p);
  const found = candidates.find((p) => existsSync(p));
  if (found) return found;
  try {
    return execFileSync('sh', ['-c', 'command -v chromium || command -v chromium-browser'], { encoding: 'utf8' }).trim();
  } catch {
    throw new Error('the browser test needs chromium and found none: run `apt-get install -y chromium` (.ci/run does), or set CHROMIUM_PATH');
  }
}

/** The page's origin: index.html, the bundle, the client artifact and the raw samples. */
function staticServer(files: Record<string, { type: string; body: string | Uint8Array }>): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    const f = files[req.url ?? ''];
    if (!f) return void res.writeHead(404).end();
    res.writeHead(200, { 'content-type': f.type });
    res.end(f.body);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server })));
}

interface PageResult {
  logits: number[][];
  keyId: string;
  uploaded: boolean;
  labels: string[];
}

describe('deploy: the client library in a headless browser', function () {
  // tests here force the cpu backend; later files in this mocha worker get the fastest back
  after(restoreFastestBackend);
  this.timeout(600000);

  /** The page's flow: keys, encryption, the server's evaluation (refresh rounds included), decryption. */
  async function inBrowser(bundle: string, clientDir: string, serverDir: string, raw: number[][], keysDir: string): Promise<{ result: PageResult; errors: string[]; keyCount: number }> {
    const api = await DeployServer.start({ artifactDir: serverDir, port: 0, workers: 1, keysDir, corsOrigin: '*', maxRequestBytes: 256 * 2 ** 20 });
    const page = await staticServer({
      '/': { type: 'text/html', body: '<!doctype html><title>hepoly</title><script src="/hepoly.js"></script>' },
      '/hepoly.js': { type: 'text/javascript', body: readFileSync(bundle) },
      '/client.json': { type: 'application/json', body: readFileSync(join(clientDir, 'client.json')) },
      '/input.json': { type: 'application/json', body: JSON.stringify(raw) },
    });
    let browser: Browser | null = null;
    try {
      browser = await chromium.launch({ executablePath: chromiumPath(), args: ['--no-sandbox'] });
      const tab = await browser.newPage();
      const errors: string[] = [];
      tab.on('pageerror', (e) => errors.push(e.message));
      await tab.goto(page.url);
      const result = (await tab.evaluate(async (apiUrl: string) => {
        const h = (globalThis as unknown as { hepoly: typeof import('../../src/browser/entry.js') }).hepoly;
        const artifact = h.ClientArtifactSchema.parse(await (await fetch('/client.json')).json());
        const client = await h.HEClient.create(artifact);
        const remote = new h.RemoteModel(artifact, { url: apiUrl });
        await remote.describe();
        const { keyId, uploaded } = await remote.ensureKeys(client);
        const samples = (await (await fetch('/input.json')).json()) as number[][];
        const r = await remote.predict(client, keyId, samples);
        client.delete();
        return { logits: r.logits.map((l) => Array.from(l)), keyId, uploaded, labels: r.labels };
      }, api.url)) as PageResult;
      return { result, errors, keyCount: api.keys.count() };
    } finally {
      await browser?.close();
      await api.close();
      await new Promise((r) => page.server.close(r));
    }
  }

  /** The plaintext model's logits for the raw samples, as the client preprocesses them. */
  async function plaintextLogits(checkpoint: string, clientDir: string, raw: number[][]): Promise<{ plain: Float32Array | Float64Array; classes: number }> {
    const artifact = loadClientArtifact(clientDir);
    await initBackend('cpu');
    const ckpt = loadCheckpoint(checkpoint);
    const per = raw[0].length;
    const x = new Float32Array(raw.length * per);
    raw.forEach((r, i) => x.set(preprocessSample(artifact, r), i * per));
    return { plain: predict(ckpt.graph, ckpt.weights, x, raw.length), classes: ckpt.graph.classes };
  }

  it('chromium encrypts, the server evaluates, chromium decrypts the plaintext model logits', async () => {
    const art = await tinyArtifacts();
    const tmp = mkdtempSync(join(tmpdir(), 'hepoly-browser-'));
    try {
      const raw = readInputFile(sampleCsv(tmp, 2), loadClientArtifact(art.mlp.client)).map((r) => Array.from(r));
      const bundle = await buildBrowserBundle(join(tmp, 'hepoly.js'));
      expect(bundle.inputs.some((i) => i.includes('node-seal/throws_wasm_web'))).to.equal(true);
      // the client path only: the shared key steps (he/key-holder), the input encoding (he/input-encoding) and the packing kinds' list (ops/types) are browser-safe modules of their own
      expect(bundle.inputs.filter((i) => i.startsWith('src/') && !/^src\/(deploy\/(client\/|framing|artifact-format)|browser\/|util\/errors|he\/key-holder|he\/input-encoding|ops\/types)/.test(i))).to.deep.equal([]);
      const { result, errors, keyCount } = await inBrowser(join(tmp, 'hepoly.js'), art.mlp.client, art.mlp.server, raw, join(tmp, 'keys'));
      expect(errors).to.deep.equal([]);
      expect(result.uploaded).to.equal(true);
      expect(result.keyId).to.match(/^[0-9a-f]{64}$/);
      expect(keyCount).to.equal(1);
      const { plain, classes } = await plaintextLogits(art.mlp.checkpoint, art.mlp.client, raw);
      result.logits.forEach((l, s) => {
        expect(l).to.have.length(classes);
        l.forEach((v, c) => expect(Math.abs(v - plain[s * classes + c]), `sample ${s} logit ${c}`).to.be.below(1e-2));
      });
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });

  it('a token-packed transformer with client refresh rounds: chromium makes the Galois keys, re-encrypts every round and decrypts the plaintext model logits', async () => {
    const tmp = mkdtempSync(join(tmpdir(), 'hepoly-browser-vit-'));
    try {
      const checkpoint = trainTinyVit(tmp);
      const params = join(tmp, 'params.json');
      // q0 = 49 bits: this ViT's widely spread denominators (test/deploy/refresh.test.ts)
      writeFileSync(params, JSON.stringify({ poly_modulus_degree: 8192, coeff_modulus_bits: [49, 30, 30, 30, 30, 49], scale_bits: 30 }));
      const r = await exportHeArtifacts({ checkpoint, out: join(tmp, 'export'), params, refresh: 'client' });
      expect(r.packing).to.equal('token');
      expect(r.refreshRounds).to.be.at.least(2);
      const raw = readInputFile(sampleCsv(tmp, 3), loadClientArtifact(r.clientDir)).map((x) => Array.from(x));
      await buildBrowserBundle(join(tmp, 'hepoly.js'));
      const { result, errors } = await inBrowser(join(tmp, 'hepoly.js'), r.clientDir, r.serverDir, raw, join(tmp, 'keys'));
      expect(errors).to.deep.equal([]);
      const { plain, classes } = await plaintextLogits(checkpoint, r.clientDir, raw);
      expect(result.logits).to.have.length(raw.length);
      result.logits.forEach((l, s) => l.forEach((v, c) => expect(Math.abs(v - plain[s * classes + c]), `sample ${s} logit ${c}`).to.be.below(2e-2 * Math.max(1, Math.abs(plain[s * classes + c])))));
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});
