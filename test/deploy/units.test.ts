import { expect } from 'chai';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compileProgram } from '../../src/he/compile.js';
import { programForward } from '../../src/he/reference.js';
import { packSample, planSample, unpackTensor } from '../../src/he/packing/sample.js';
import { applyNormalize, type NormalizeStats } from '../../src/data/dataset.js';
import { decodeFrames, encodeFrames } from '../../src/deploy/framing.js';
import { decodeProgram, encodeProgram } from '../../src/deploy/program-codec.js';
import { slotLayout } from '../../src/deploy/export.js';
import { packInput, unpackOutput } from '../../src/deploy/client/layout.js';
import { preprocessSample } from '../../src/deploy/client/preprocess.js';
import type { ClientArtifact } from '../../src/deploy/artifact-format.js';
import { KeyStore } from '../../src/deploy/server/key-store.js';
import { galoisElement } from '../../src/deploy/server/wire-checks.js';
import { randomInputs, randomWeights, tinyCnn, tinyMlp } from '../he/fixtures.js';
import { makeRng } from '../../src/util/rng.js';

/** The deploy pieces against their references: framing, the program codec, slot layouts, preprocessing, the key store. */

describe('deploy units', () => {
  it('framing: parts round-trip; truncated, padded or foreign bodies are refused with a message', () => {
    const parts = [new Uint8Array([1, 2, 3]), new Uint8Array(0), new Uint8Array(1000).fill(9)];
    const body = encodeFrames(parts);
    expect(decodeFrames(body, 'x').map((p) => Array.from(p))).to.deep.equal(parts.map((p) => Array.from(p)));
    expect(() => decodeFrames(body.subarray(0, body.length - 1), 'body')).to.throw(/body: not a hepoly framed body \(part 2 claims 1000 bytes, 999 remain\)/);
    const padded = new Uint8Array(body.length + 2);
    padded.set(body);
    expect(() => decodeFrames(padded, 'body')).to.throw(/2 bytes after the last part/);
    expect(() => decodeFrames(new TextEncoder().encode('{"a":1}xxxxx'), 'body')).to.throw(/no HPF1 header/);
  });

  for (const [name, graph] of [['mlp', tinyMlp()], ['cnn', tinyCnn()]] as const) {
    it(`${name}: the program survives program.json + program.bin, and evaluates the same`, () => {
      const p = compileProgram(graph, randomWeights(graph, 5));
      const { json, bin } = encodeProgram(p);
      const q = decodeProgram(json, bin, 'test');
      const x = Float64Array.from(randomInputs(graph, 1, 6));
      const a = programForward(p, x);
      const b = programForward(q, x);
      expect(b[q.output]).to.deep.equal(a[p.output]);
      expect(q.steps.length).to.equal(p.steps.length);
      expect(() => decodeProgram(json, bin.subarray(0, 8), 'dir')).to.throw(/dir: program.json \/ program.bin do not decode/);
    });

    it(`${name}: the client packs and unpacks from the exported layout exactly as the sample packing does`, () => {
      const p = compileProgram(graph, randomWeights(graph, 7));
      const slots = 4096;
      const plan = planSample(p, slots);
      const x = Float64Array.from(randomInputs(graph, 1, 8));
      const mine = packInput(slotLayout(plan.layouts[p.input]!), slots, x);
      const ref = packSample(plan, p, x);
      expect(mine.map((v) => Array.from(v))).to.deep.equal(ref.map((v) => Array.from(v)));
      const rng = makeRng(9, 'deploy-unpack');
      const outL = plan.layouts[p.output]!;
      const decrypted = Array.from({ length: outL.cts }, () => Float64Array.from({ length: slots }, () => rng.next()));
      expect(Array.from(unpackOutput(slotLayout(outL), slots, decrypted))).to.deep.equal(Array.from(unpackTensor(plan, p.output, decrypted)));
    });
  }

  it('preprocessing matches the training-time applyNormalize (standard, minmax, affine)', () => {
    const F = 4;
    const raw = Float32Array.from([3, -1, 0.5, 8]);
    const cases: NormalizeStats[] = [
      { kind: 'standard', mean: [1, 0, 0.5, 2], std: [2, 0.5, 0, 4] },
      { kind: 'minmax', min: [0, -2, 0, 8], max: [4, 2, 1, 8] },
      { kind: 'affine', scale: 1 / 255, shift: -0.5 },
    ];
    for (const n of cases) {
      const ref = Float32Array.from(raw);
      applyNormalize(ref, F, n);
      const artifact = { preprocess: { labels: ['a', 'b'], input_shape: [F], normalize: n, source: 'csv' } } as unknown as ClientArtifact;
      const mine = preprocessSample(artifact, raw);
      mine.forEach((v, j) => expect(v, `${n.kind} ${j}`).to.be.closeTo(ref[j], 1e-6));
    }
    const artifact = { preprocess: { labels: [], input_shape: [F], normalize: { kind: 'none' }, source: 'csv' } } as unknown as ClientArtifact;
    expect(() => preprocessSample(artifact, [1, 2, 3], 'row 7')).to.throw(/row 7: 3 values, the model takes 4/);
    expect(() => preprocessSample(artifact, [1, NaN, 3, 4], 'row 7')).to.throw(/row 7: value 1 is NaN/);
  });

  it('key store: stored keys come back, expire, and an interrupted write is recovered or dropped', () => {
    const dir = mkdtempSync(join(tmpdir(), 'hepoly-keystore-'));
    try {
      const id = 'a'.repeat(64);
      const store = new KeyStore(join(dir, 'keys'), 1000);
      store.put(id, new Uint8Array([1, 2, 3]), 'd'.repeat(64), 0);
      expect(Array.from(new KeyStore(join(dir, 'keys'), 1000).get(id, 10).bytes)).to.deep.equal([1, 2, 3]);
      expect(() => store.get(id, 5000)).to.throw(/expired at 1970-01-01T00:00:01.000Z/);
      expect(existsSync(join(dir, 'keys', id))).to.equal(false);
      // a kill between writing the temp folder and renaming it: the complete copy is taken
      const id2 = 'b'.repeat(64);
      const tmp = join(dir, 'keys', `${id2}.tmp-4242`);
      mkdirSync(tmp);
      writeFileSync(join(tmp, 'keys.bin'), new Uint8Array([7]));
      writeFileSync(join(tmp, 'meta.json'), JSON.stringify({ key_id: id2, server_digest: 'd', created_at: '', expires_at: '2999-01-01T00:00:00Z', bytes: 1 }));
      const half = join(dir, 'keys', `${'c'.repeat(64)}.tmp-4243`);
      mkdirSync(half);
      writeFileSync(join(half, 'keys.bin'), new Uint8Array([1]));
      const again = new KeyStore(join(dir, 'keys'), 1000);
      expect(Array.from(again.get(id2).bytes)).to.deep.equal([7]);
      expect(existsSync(half)).to.equal(false);
      expect(() => again.get('c'.repeat(64))).to.throw(/unknown on this server/);
      expect(() => again.get('../x')).to.throw(/expected 64 hex digits/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("Galois elements follow SEAL's rule (3^step mod 2N)", () => {
    expect(galoisElement(1, 8192)).to.equal(3);
    expect(galoisElement(2, 8192)).to.equal(9);
    // 3^16 = 43046721; mod 16384
    expect(galoisElement(16, 8192)).to.equal(43046721 % 16384);
  });
});
