import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import seedrandom from 'seedrandom';
import { PACKINGS, packingOf } from '../../src/he/packing/index.js';
import { exportPacking } from '../../src/deploy/export-packing.js';
import { exportHeArtifacts } from '../../src/deploy/export.js';
import { SlotLayoutSchema, compactLayout } from '../../src/deploy/artifact-format.js';
import { buildGraph } from '../../src/models/build.js';
import { compileProgram } from '../../src/he/compile.js';
import type { ModelConfig } from '../../src/recipe/schema.js';
import { randomWeights } from '../he/fixtures.js';
import { loadClientArtifact, loadServerArtifact } from '../../src/deploy/artifact-load.js';
import { DeployServer } from '../../src/deploy/server/server.js';
import { HEClient, RemoteModel, packInput, preprocessSample, unpackOutput } from '../../src/deploy/client/index.js';
import { readInputFile } from '../../src/deploy/input-file.js';
import { loadCheckpoint } from '../../src/train/checkpoint.js';
import { initBackend } from '../../src/train/backend.js';
import { predict } from '../../src/models/tf-interpreter.js';
import { sampleCsv, tinyArtifacts, type TinyArtifacts } from './fixtures.js';
import { restoreFastestBackend } from '../helpers/backend.js';

/**
 * Every packing of the registry exported and served: the client's slot layouts (read off each
 * packing's pack / unpack) place and read values exactly as the packing does, and a batch and an
 * interleaved export predict over HTTP on SEAL with the plaintext model's logits.
 */

describe('deploy: export and serve every packing', function () {
  // tests here force the cpu backend; later files in this mocha worker get the fastest back
  after(restoreFastestBackend);
  this.timeout(600000);
  let art: TinyArtifacts;

  before(async () => {
    art = await tinyArtifacts();
  });

  it('batch packing of 28x28 images (3.2 million slot entries per pass): the layout is computed and written as runs', () => {
    const graph = buildGraph({ kind: 'mlp', hidden: [2], batchnorm: false, activation: { kind: 'quad' } } as ModelConfig, [28, 28, 1], 10);
    const program = compileProgram(graph, randomWeights(graph, 3));
    const params = { polyModulusDegree: 8192, coeffModulusBits: [40, 26, 26, 26, 40], scaleBits: 26 };
    const e = exportPacking('batch', program, params, 'images');
    expect(e.input.replicas[0].length).to.equal(4096 * 784);
    const written = JSON.stringify(compactLayout(e.input));
    expect(written.length).to.be.below(200_000);
    expect(SlotLayoutSchema.parse(JSON.parse(written)).replicas[0].slice(0, 3)).to.deep.equal([0, 4096, 8192]);
  });

  for (const model of ['mlp', 'cnn'] as const) {
    it(`${model}: for every packing, the exported layouts pack and unpack as the packing itself does`, () => {
      const server = loadServerArtifact(art[model].server);
      const { program } = server;
      const params = server.manifest.params;
      const rng = seedrandom(`layouts-${model}`);
      const kinds = PACKINGS.map((p) => (p.kind === 'stacked' || p.kind === 'interleaved' ? `${p.kind}:2` : p.kind));
      expect(kinds).to.deep.equal(['batch', 'sample', 'stacked:2', 'interleaved:2', 'token']);
      // token packing folds token sequences: these networks have none, and export says so
      expect(() => exportPacking('token', program, params, model)).to.throw(/token packing folds token sequences.*drop --packing token \(the default picks a packing/);
      for (const spec of kinds.filter((k) => k !== 'token')) {
        const e = exportPacking(spec, program, params, model);
        const packing = packingOf(e.kind);
        const m = e.samplesPerPass;
        const per = program.inputShape.reduce((a, b) => a * b, 1);
        const x = Float64Array.from({ length: m * per }, () => rng() * 2 - 1);
        const theirs = packing.pack(e.plan, x, m);
        const mine = packInput(e.input, e.plan.slots, x);
        expect(mine.length, spec).to.equal(theirs.length);
        mine.forEach((v, ct) => expect(Array.from(v), `${spec} input ciphertext ${ct}`).to.deep.equal(Array.from(theirs[ct])));
        const outs = Array.from({ length: e.output.ciphertexts }, () => Float64Array.from({ length: e.plan.slots }, () => rng()));
        expect(Array.from(unpackOutput(e.output, e.plan.slots, outs)), `${spec} output`).to.deep.equal(Array.from(packing.unpack(e.plan, outs, m)));
        // as client.json writes them (runs where shorter) and reads them back: the same layouts
        for (const l of [e.input, e.output]) {
          const written = compactLayout(l);
          expect(SlotLayoutSchema.parse(JSON.parse(JSON.stringify(written))), `${spec} layout through client.json`).to.deep.equal(l);
          const size = (v: unknown) => JSON.stringify(v).length;
          expect(size(written), spec).to.be.at.most(size(l));
          if (spec === 'batch' && l === e.input) expect(size(written) * 10, 'a batch input layout is one run per sample').to.be.below(size(l));
        }
      }
      expect(() => SlotLayoutSchema.parse({ shape: [2], ciphertexts: 1, replicas: [{ runs: [0, 1] }] })).to.throw(/\[start, step, count\] triples/);
      expect(() => exportPacking('stacked:3', program, params, model)).to.throw(/M must be a power of two that divides/);
      expect(() => exportPacking('diagonal', program, params, model)).to.throw(/expected one of batch, sample, stacked, interleaved/);
    });
  }

  for (const [model, spec] of [['mlp', 'batch'], ['mlp', 'interleaved:2']] as const) {
    it(`${model} exported with --packing ${spec}: predictions over HTTP match the plaintext model`, async () => {
      const tmp = mkdtempSync(join(tmpdir(), 'hepoly-packing-'));
      const exp = await exportHeArtifacts({ checkpoint: art[model].checkpoint, out: join(tmp, 'export'), packing: spec });
      const artifact = loadClientArtifact(exp.clientDir);
      expect(artifact.packing.kind).to.equal(spec.split(':')[0]);
      const server = await DeployServer.start({ artifactDir: exp.serverDir, port: 0, workers: 1, keysDir: join(tmp, 'keys') });
      const client = await HEClient.create(artifact);
      try {
        expect(client.samplesPerPass).to.equal(spec === 'batch' ? artifact.slots : 2);
        const remote = new RemoteModel(artifact, { url: server.url });
        const { keyId } = await remote.ensureKeys(client);
        const raw = readInputFile(sampleCsv(tmp, 3), artifact);
        const r = await remote.predict(client, keyId, raw);
        expect(r.logits.length).to.equal(3);
        await initBackend('cpu');
        const ckpt = loadCheckpoint(art[model].checkpoint);
        const x = raw.map((v) => preprocessSample(artifact, v));
        const flat = new Float32Array(x.length * x[0].length);
        x.forEach((v, i) => flat.set(v, i * v.length));
        const plain = predict(ckpt.graph, ckpt.weights, flat, x.length);
        const classes = artifact.preprocess.labels.length;
        r.logits.forEach((l, s) => l.forEach((v, c) => expect(Math.abs(v - plain[s * classes + c]), `sample ${s} logit ${c}`).to.be.below(1e-2)));
      } finally {
        client.delete();
        await server.close();
        rmSync(tmp, { recursive: true, force: true });
      }
    });
  }
});
