import { expect } from 'chai';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
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
import { sampleCsv, tinyArtifacts } from './fixtures.js';
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

  it('chromium encrypts, the server evaluates, chromium decrypts the plaintext model logits', async () => {
    const executablePath = chromiumPath();
    const art = await tinyArtifacts();
    const tmp = mkdtempSync(join(tmpdir(), 'hepoly-browser-'));
    const artifact = loadClientArtifact(art.mlp.client);
    const raw = readInputFile(sampleCsv(tmp, 2), artifact).map((r) => Array.from(r));
    const bundle = await buildBrowserBundle(join(tmp, 'hepoly.js'));
    expect(bundle.inputs.some((i) => i.includes('node-seal/throws_wasm_web'))).to.equal(true);
    // the client path only: the shared key steps (he/key-holder), the input encoding (he/input-encoding) and the packing kinds' list (ops/types) are browser-safe modules of their own
    expect(bundle.inputs.filter((i) => i.startsWith('src/') && !/^src\/(deploy\/(client\/|framing|artifact-format)|browser\/|util\/errors|he\/key-holder|he\/input-encoding|ops\/types)/.test(i))).to.deep.equal([]);
    const api = await DeployServer.start({ artifactDir: art.mlp.server, port: 0, workers: 1, keysDir: join(tmp, 'keys'), corsOrigin: '*' });
    const page = await staticServer({
      '/': { type: 'text/html', body: '<!doctype html><title>hepoly</title><script src="/hepoly.js"></script>' },
      '/hepoly.js': { type: 'text/javascript', body: readFileSync(join(tmp, 'hepoly.js')) },
      '/client.json': { type: 'application/json', body: readFileSync(join(art.mlp.client, 'client.json')) },
      '/input.json': { type: 'application/json', body: JSON.stringify(raw) },
    });
    let browser: Browser | null = null;
    try {
      browser = await chromium.launch({ executablePath, args: ['--no-sandbox'] });
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
      expect(errors).to.deep.equal([]);
      expect(result.uploaded).to.equal(true);
      expect(result.keyId).to.match(/^[0-9a-f]{64}$/);
      expect(api.keys.count()).to.equal(1);

      await initBackend('cpu');
      const ckpt = loadCheckpoint(art.mlp.checkpoint);
      const per = raw[0].length;
      const x = new Float32Array(raw.length * per);
      raw.forEach((r, i) => x.set(preprocessSample(artifact, r), i * per));
      const plain = predict(ckpt.graph, ckpt.weights, x, raw.length);
      const classes = ckpt.graph.classes;
      result.logits.forEach((l, s) => {
        expect(l).to.have.length(classes);
        l.forEach((v, c) => expect(Math.abs(v - plain[s * classes + c]), `sample ${s} logit ${c}`).to.be.below(1e-2));
      });
    } finally {
      await browser?.close();
      await api.close();
      await new Promise((r) => page.server.close(r));
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});
