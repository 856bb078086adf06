import { expect } from 'chai';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadRecipe } from '../../src/recipe/load.js';
import { train } from '../../src/train/loop.js';
import { loadCheckpoint } from '../../src/train/checkpoint.js';
import { initBackend } from '../../src/train/backend.js';
import { compileProgram } from '../../src/he/compile.js';
import { HEClient, type PublicBundle } from '../../src/he/client.js';
import { HEServer } from '../../src/he/server.js';
import type { ToWorker } from '../../src/he/protocol.js';
import { packSample, planSample } from '../../src/he/packing/sample.js';
import { validate, type PackingChoice } from '../../src/he/validate.js';
import { randomInputs, randomWeights, tinyMlp } from './fixtures.js';
import { TEST_PARAMS } from './pipeline.js';
import { tempDir } from '../helpers/tmp.js';
import { walkHeap, type HeapFindings } from '../helpers/heap-walk.js';
import { type ByteString, SecretKeyDetector, byteStringsOf, byteStringsOfHeap, clientSecretKey, isSealInternals, sealObjectsIn, type secretKeyOf } from '../helpers/secret-scan.js';
import { HoldsInPrivateField, closureHolding, holdInModule, releaseModuleHeld } from '../helpers/planted.js';
import { keyCodeModules, runtimeImportGraph } from '../helpers/import-graph.js';
import { restoreFastestBackend } from '../helpers/backend.js';

/**
 * The server cannot decrypt: no secret key reaches the evaluating side. Checked on what the
 * worker threads actually received (a tap in each worker copies every message back), on
 * everything the server object holds (private fields, closures and module state included, by
 * V8's inspector), and on the import graph of the server and worker code. Each check is first shown to flag a planted secret key.
 */

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SRC_URL = new URL('../../src/', import.meta.url).href;
const PLANTED_URL = new URL('../helpers/planted.ts', import.meta.url).href;

/** node-seal classes that are or hold a secret key */
const SECRET_CLASSES = ['SecretKey', 'KeyGenerator', 'Decryptor'];

interface ServerSeen {
  server: HEServer;
  bundle: PublicBundle;
  messages: ToWorker[];
}

interface Observed {
  clients: HEClient[];
  servers: ServerSeen[];
  /** client deletions, held back until the checks have read them */
  deferred: (() => void)[];
}

/**
 * Runs a shipped entry point (validate) with every server started with a
 * worker tap, every client recorded, and their deletion deferred.
 */
async function observe<T>(run: () => Promise<T>): Promise<{ result: T; seen: Observed }> {
  const seen: Observed = { clients: [], servers: [], deferred: [] };
  const create = HEClient.create;
  const deleteClient = HEClient.prototype.delete;
  const start = HEServer.start;
  const close = HEServer.prototype.close;
  HEClient.create = async (params, seal) => {
    const c = await create.call(HEClient, params, seal);
    seen.clients.push(c);
    return c;
  };
  HEClient.prototype.delete = function (this: HEClient) {
    seen.deferred.push(() => deleteClient.call(this));
  };
  HEServer.start = async (bundle, program, packing, opts = {}) => {
    const messages: ToWorker[] = [];
    const server = await start.call(HEServer, bundle, program, packing, { ...opts, tap: (m) => messages.push(m) });
    seen.servers.push({ server, bundle, messages });
    return server;
  };
  HEServer.prototype.close = async function (this: HEServer) {
    await this.tapDrained();
    return close.call(this);
  };
  try {
    return { result: await run(), seen };
  } catch (e) {
    for (const d of seen.deferred) d();
    throw e;
  } finally {
    HEClient.create = create;
    HEClient.prototype.delete = deleteClient;
    HEServer.start = start;
    HEServer.prototype.close = close;
  }
}

/** The detector for this client's secret key, after checking it recognizes that key. */
async function detectorFor(client: HEClient): Promise<SecretKeyDetector> {
  return detectorOf(await clientSecretKey(client, SRC_URL));
}

/** The detector for a secret key, after checking it recognizes that key. */
async function detectorOf(sk: ReturnType<typeof secretKeyOf>): Promise<SecretKeyDetector> {
  const detector = await SecretKeyDetector.create(sk);
  expect(detector.check(sk.saveArray()), 'the detector recognizes the client key it was given').to.match(/the client's secret key/);
  return detector;
}

/** Node-seal objects that are or hold a secret key, among what a heap walk found. */
function secretSealObjects(h: HeapFindings): string[] {
  return sealObjectsIn(h)
    .filter((o) => SECRET_CLASSES.includes(o.sealClass))
    .map((o) => `${o.path}: ${o.sealClass}`);
}

/** Checks one observed he-validate run; returns what was scanned. */
async function expectServerHeldNoSecret(seen: Observed): Promise<{ types: string[]; messages: number; bytes: number; heapObjects: number }> {
  expect(seen.servers, 'one server').to.have.length(1);
  const [{ server, bundle, messages }] = seen.servers;
  // the run's own client, plus those the calibrated cost model keys for its speed probe and
  // micro-benchmark: none of the secret keys that still exist may reach the server (the
  // micro-benchmark deletes its client, key included, before the run's server starts)
  const detectors: SecretKeyDetector[] = [];
  // one walk at a time: the walks share one inspector session
  for (const c of seen.clients) {
    const sk = await clientSecretKey(c, SRC_URL);
    if ((sk as unknown as { instance?: unknown }).instance) detectors.push(await detectorOf(sk));
  }
  expect(detectors.length, "the run's client and its key are alive").to.be.at.least(1);
  const detector = { findings: (strings: ByteString[]) => detectors.flatMap((d) => d.findings(strings)) };
  try {
    // the tap recorded what the workers got: the init message carries the bundle's real bytes
    const init = messages.find((m): m is Extract<ToWorker, { type: 'init' }> => m.type === 'init');
    expect(init, 'an init message reached a worker').to.not.equal(undefined);
    expect(Buffer.from(init!.init.publicKey).equals(Buffer.from(bundle.publicKey))).to.equal(true);
    const strings = messages.flatMap((m, i) => byteStringsOf(m, `message ${i} (${m.type})`));
    expect(detector.findings(strings), 'secret keys in messages the workers received').to.deep.equal([]);
    // and the server object: no SEAL object at all (its thread never loads SEAL), no secret bytes
    const heap = await walkHeap(server, { scopesUnder: SRC_URL, stopWhen: isSealInternals });
    expect(heap.classes.has('WorkerHandle'), 'the walk reached the worker handles').to.equal(true);
    expect(sealObjectsIn(heap).map((o) => `${o.path}: ${o.sealClass}`), 'SEAL objects on the server').to.deep.equal([]);
    const held = byteStringsOfHeap(heap);
    expect(detector.findings(held), 'secret keys the server holds').to.deep.equal([]);
    return {
      types: [...new Set(messages.map((m) => m.type))].sort(),
      messages: messages.length,
      bytes: strings.reduce((a, s) => a + s.bytes.length, 0),
      heapObjects: heap.visited,
    };
  } finally {
    for (const d of seen.deferred.splice(0)) d();
  }
}

/** A small real checkpoint: the quickstart recipe shrunk to seconds of training (one hidden layer: depth 3, a 5-prime chain). */
async function trainTiny(dir: string, set: string[]): Promise<string> {
  const { recipe } = loadRecipe('recipes/quickstart.yaml', ['train.epochs=1', 'model.hidden=[8]', ...set]);
  await train({ recipe, recipeFile: 'quickstart.yaml', outDir: dir, callbacks: {} });
  return dir;
}

describe('he: the server cannot decrypt (secret key separation)', function () {
  // tests here force the cpu backend; later files in this mocha worker get the fastest back
  after(restoreFastestBackend);
  this.timeout(600000);
  const tmp = tempDir('hepoly-sep-');
  let mlp = '';
  before(async () => {
    await initBackend('cpu');
    mlp = await trainTiny(join(tmp.path, 'mlp'), []);
  });
  after(() => tmp.cleanup());

  describe('positive controls: the checks flag a planted secret key', () => {
    let client: HEClient;
    let detector: SecretKeyDetector;
    let skObject: ReturnType<typeof secretKeyOf>;
    before(async () => {
      client = await HEClient.create(TEST_PARAMS);
      skObject = await clientSecretKey(client, SRC_URL);
      detector = await SecretKeyDetector.create(skObject);
    });
    after(() => {
      client?.delete();
    });

    it('in the byte forms a leak could take: whole, compressed, inside a larger buffer, half of it, as numbers, base64 or hex; public material passes', () => {
      const raw = skObject.saveArray(client.ctx.seal.ComprModeType.none);
      const zstd = skObject.saveArray();
      const inside = new Uint8Array(zstd.length + 300);
      inside.set(zstd, 123);
      const bundle = client.publicBundle([1, 2]);
      expect(detector.check(raw)).to.match(/holds the client's secret key \(uncompressed\)/);
      expect(detector.check(zstd)).to.match(/holds the client's secret key \(zstd\)/);
      expect(detector.check(skObject.saveArray(client.ctx.seal.ComprModeType.zlib))).to.match(/holds the client's secret key \(zlib\)/);
      expect(detector.check(inside)).to.match(/holds the client's secret key \(zstd\)/);
      expect(detector.check(raw.subarray(raw.length / 2))).to.match(/holds the client's secret key \(uncompressed\)/);
      const forms = byteStringsOf({ a: [{ b: Array.from(raw) }], c: Buffer.from(zstd).toString('base64'), d: new Map([['k', Buffer.from(raw).toString('hex')]]) });
      expect(detector.findings(forms)).to.have.length(3);
      expect(detector.findings(byteStringsOf(bundle))).to.deep.equal([]);
      expect(detector.findings(byteStringsOf(client.encrypt([new Float64Array(4)])))).to.deep.equal([]);
    });

    it('in a private field, a closure, module state and as a SEAL object, where a property walk sees nothing', async () => {
      const zstd = skObject.saveArray();
      const planted = {
        field: new HoldsInPrivateField(zstd),
        closure: closureHolding(Buffer.from(zstd).toString('base64')),
        module: holdInModule(Array.from(skObject.saveArray(client.ctx.seal.ComprModeType.none))),
      };
      try {
        for (const [where, root] of Object.entries(planted)) {
          // own enumerable properties show nothing of it
          expect(JSON.stringify(Object.keys(root)), where).to.not.match(/held/);
          const heap = await walkHeap(root, { scopesUnder: PLANTED_URL, stopWhen: isSealInternals });
          expect(detector.findings(byteStringsOfHeap(heap)), where).to.have.length.above(0);
        }
      } finally {
        releaseModuleHeld();
      }
      const asObject = await walkHeap(new HoldsInPrivateField(skObject), { scopesUnder: PLANTED_URL, stopWhen: isSealInternals });
      expect(secretSealObjects(asObject)).to.deep.equal(['root.#held: SecretKey']);
      // and on a real server: clean alone, flagged with a key planted beside it
      const g = tinyMlp();
      const p = compileProgram(g, randomWeights(g, 3));
      const server = await HEServer.start(client.publicBundle([]), p, 'batch', { workers: 1, mode: 'simulate', tap: () => {} });
      try {
        expect(detector.findings(byteStringsOfHeap(await walkHeap(server, { scopesUnder: SRC_URL, stopWhen: isSealInternals })))).to.deep.equal([]);
        Object.defineProperty(server, 'hidden', { value: closureHolding(zstd), enumerable: false });
        const withKey = await walkHeap(server, { scopesUnder: [SRC_URL, PLANTED_URL], stopWhen: isSealInternals });
        expect(withKey.classes.has('HEServer')).to.equal(true);
        expect(detector.findings(byteStringsOfHeap(withKey))).to.have.length.above(0);
      } finally {
        await server.close();
      }
    });

    it('in a message a worker received (the tap records what reached the thread)', async () => {
      const g = tinyMlp();
      const w = randomWeights(g, 3);
      const p = compileProgram(g, w);
      const plan = planSample(p, client.slots);
      const messages: ToWorker[] = [];
      const server = await HEServer.start(client.publicBundle(plan.rotationSteps), p, 'sample', { workers: 1, tap: (m) => messages.push(m) });
      try {
        const x = randomInputs(g, 1, 4);
        await server.evaluateSamples([client.encrypt(packSample(plan, p, x))]);
        // planted: the key inside a shared buffer of a stage message and as a sample's input
        const zstd = skObject.saveArray();
        const sab = new SharedArrayBuffer(zstd.length + 64);
        new Uint8Array(sab).set(zstd, 64);
        const handle = (server as unknown as { handles: { post(m: unknown): void }[] }).handles[0];
        handle.post({ type: 'stage', id: 900001, stage: 0, group: [], buffers: [sab], sources: [] });
        handle.post({ type: 'sample', id: 900002, inputs: [zstd], trace: false });
        await server.tapDrained();
      } finally {
        await server.close();
      }
      expect(messages.map((m) => m.type)).to.deep.equal(['init', 'sample', 'stage', 'sample']);
      const flagged = messages.map((m, i) => detector.findings(byteStringsOf(m, `message ${i}`)).length);
      expect(flagged).to.deep.equal([0, 0, 1, 1]);
    });
  });

  // every packing the CNN/MLP path serves, and the interactive refresh path
  const runs: { name: string; packing: PackingChoice; samples: number; types: string[]; refresh?: boolean }[] = [
    { name: 'batch', packing: 'batch', samples: 2, types: ['init', 'stage'] },
    { name: 'sample', packing: 'sample', samples: 2, types: ['init', 'sample'] },
    { name: 'stacked:2', packing: 'stacked:2', samples: 3, types: ['init', 'sample'] },
    { name: 'interleaved:2', packing: 'interleaved:2', samples: 3, types: ['init', 'sample'] },
    { name: 'sample --refresh client (segments)', packing: 'sample', samples: 2, types: ['init', 'segment'], refresh: true },
  ];
  for (const r of runs) {
    it(`he-validate --packing ${r.name} under SEAL: no message a worker received and nothing the server holds is a secret key`, async () => {
      let params: string | undefined;
      if (r.refresh) {
        // 1 level for a depth-3 network: the program is cut into segments with client refreshes
        // (the transformer test's N=4096 chain, so the file calibrates one ring less)
        params = join(tmp.path, 'refresh-params.json');
        writeFileSync(params, JSON.stringify({ poly_modulus_degree: 4096, coeff_modulus_bits: [41, 27, 41], scale_bits: 27 }));
      }
      const { result, seen } = await observe(() => validate({ checkpoint: mlp, samples: r.samples, packing: r.packing, workers: 1, params, refresh: r.refresh ? 'client' : 'none' }));
      expect(result.agreement, 'it did evaluate: decrypted logits agree with the plaintext model').to.equal(1);
      if (r.refresh) expect(result.refreshes!.total).to.be.above(0);
      const scanned = await expectServerHeldNoSecret(seen);
      expect(scanned.types).to.deep.equal(r.types);
      expect(scanned.bytes).to.be.above(0);
    });
  }

  it('a transformer (SEAL, batch and token packing, --refresh client): the server is given only public, relinearization and Galois keys and ciphertexts, and holds no secret-key object', async () => {
    const text = join(tmp.path, 'tiny.txt');
    writeFileSync(text, 'the cat sat on the mat. the dog sat on the log.\n'.repeat(20));
    const recipeFile = join(tmp.path, 'lm.yaml');
    writeFileSync(
      recipeFile,
      `name: tiny-lm
data: {source: text, path: ${JSON.stringify(text)}, context: 2, split: {validation: 0.1, test: 0.1}}
model: {kind: transformer, task: lm, layers: 1, dim: 2, heads: 1, mlp_ratio: 1, attention: {kind: power-softmax, p: 2}, norm: batchnorm}
train: {epochs: 1, batch: 64, optimizer: {kind: adam, lr: 0.01}}
`,
    );
    const { recipe } = loadRecipe(recipeFile);
    const dir = join(tmp.path, 'lm');
    await train({ recipe, recipeFile, outDir: dir, callbacks: {} });
    // a fixed N=4096 chain, one level per segment (--params auto could pick an uncut N=32768)
    const lmParams = join(tmp.path, 'lm-params.json');
    writeFileSync(lmParams, JSON.stringify({ poly_modulus_degree: 4096, coeff_modulus_bits: [41, 27, 41], scale_bits: 27 }));
    // batch packing, and token packing (the default: Galois keys go to the batch evaluator too)
    for (const packing of ['batch', 'token'] as const) {
      const { result, seen } = await observe(() => validate({ checkpoint: dir, samples: 2, packing, params: lmParams, workers: 1, refresh: 'client' }));
      expect(result.packing).to.equal(packing);
      expect(result.agreement, `${packing}: it did evaluate: decrypted logits agree with the plaintext model`).to.equal(1);
      expect(result.refreshes!.total, `${packing}: the refresh path ran`).to.be.above(0);
      if (packing === 'token') expect(result.ops.rotations, 'token packing rotated whole token blocks').to.be.above(0);
      const scanned = await expectServerHeldNoSecret(seen);
      expect(scanned.bytes).to.be.above(0);
    }
  });

  it('server and worker code cannot load the key-generation code (runtime import graph)', () => {
    // the check finds key code where it is: the client side's graph reaches it
    const clientSide = runtimeImportGraph(ROOT, ['src/he/validate.ts']);
    expect(keyCodeModules(ROOT, clientSide.modules)).to.include('src/he/client.ts');

    const evaluating = runtimeImportGraph(ROOT, ['src/he/server.ts', 'src/he/worker.ts']);
    expect(evaluating.modules.size, 'the walk followed imports').to.be.above(8);
    expect(evaluating.modules.has('src/he/client.ts')).to.equal(false);
    expect(keyCodeModules(ROOT, evaluating.modules), 'modules that make or use a secret key').to.deep.equal([]);
    expect(evaluating.unresolvedDynamic).to.deep.equal([]);
    // the server's own thread does not even load SEAL
    expect([...runtimeImportGraph(ROOT, ['src/he/server.ts']).packages]).to.not.include('node-seal');
  });
});
