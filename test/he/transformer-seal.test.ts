import { expect } from 'chai';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { hepoly } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';
import { loadCheckpoint } from '../../src/train/checkpoint.js';
import { validateSequence } from '../../src/he/transformer/validate.js';
import { encodeInputs, evaluateSequenceModel } from '../../src/he/transformer/evaluator.js';
import { ClientRefresher } from '../../src/he/transformer/refresh.js';
import { SimBackend } from '../../src/he/sim-backend.js';
import { SimClient } from '../../src/he/sim-client.js';
import { heldOutSplit } from '../../src/train/evaluate.js';
import { HepolyError } from '../../src/util/errors.js';

/**
 * A tiny character LM (power-softmax attention, batchnorm, quad) under real SEAL: encrypted on
 * the client, evaluated from public bytes only, decrypted on the client. Its depth exceeds any
 * ring this test can afford, so it runs with client refresh, and is refused without it.
 */
describe('transformer he-validate (under SEAL unless the test says simulated)', function () {
  this.timeout(300000);
  const tmp = tempDir();
  after(() => tmp.cleanup());
  const out = join(tmp.path, 'ckpt');

  before(async () => {
    await tf.setBackend('cpu');
    const text = join(tmp.path, 'tiny.txt');
    writeFileSync(text, 'the cat sat on the mat. the dog sat on the log.\n'.repeat(40));
    const recipe = join(tmp.path, 'lm.yaml');
    writeFileSync(
      recipe,
      `name: tiny-lm
data: {source: text, path: ${JSON.stringify(text)}, context: 4, split: {validation: 0.1, test: 0.1}}
model: {kind: transformer, task: lm, layers: 1, dim: 8, heads: 2, mlp_ratio: 1, attention: {kind: power-softmax, p: 2}, norm: batchnorm}
train: {epochs: 2, batch: 64, optimizer: {kind: adam, lr: 0.01}}
`,
    );
    const r = hepoly(['train', recipe, '--out', out, '--json']);
    expect(r.code, r.stderr).to.equal(0);
  });

  it('SEAL: encrypted forward with client refresh agrees with plaintext; every refresh is named', async () => {
    const r = await validateSequence(loadCheckpoint(out), { samples: 6, mode: 'encrypt', refresh: 'client', trace: true });
    expect(r.params.polyModulusDegree).to.be.oneOf([4096, 8192]);
    expect(r.params.securityBits).to.equal(128);
    expect(r.depth).to.be.above(r.params.levels);
    expect(r.agreement).to.equal(1);
    expect(r.maxAbsError).to.be.below(1e-2);
    expect(r.refreshes.count).to.be.above(0);
    expect(r.refreshes.where.map((w) => w.at).join(' ')).to.match(/b1_attn\/reciprocal/);
    expect(r.layers!.map((l) => l.node)).to.include.members(['b1_attn', 'logits']);
    for (const k of ['attention_products', 'power_softmax', 'reciprocal', 'mlp', 'norm']) expect(r.componentMs[k as keyof typeof r.componentMs]).to.be.above(0);
  });

  it('SEAL: the evaluator\'s heap can be replaced between every two nodes and the result stays the same', async () => {
    const ckpt = loadCheckpoint(out);
    const once = await validateSequence(ckpt, { samples: 6, mode: 'encrypt', refresh: 'client' });
    const recycled = await validateSequence(ckpt, { samples: 6, mode: 'encrypt', refresh: 'client', recycleBudgetBytes: 0 });
    expect(once.heapRecycles.count).to.equal(0);
    // every node made ciphertexts, so each one is followed by a fresh heap
    expect(recycled.heapRecycles.count).to.equal(ckpt.graph.nodes.length);
    expect(recycled.agreement).to.equal(1);
    expect(recycled.maxAbsError).to.be.below(1e-2);
    expect(recycled.refreshes.count).to.equal(once.refreshes.count);
  });

  it('the evaluator frees every intermediate ciphertext, refreshes included (simulated backend counting live ciphertexts; SEAL objects live in a 4 GiB wasm heap)', async () => {
    const ckpt = loadCheckpoint(out);
    const params = { polyModulusDegree: 64, coeffModulusBits: [50, 30, 30, 30, 30, 50], scaleBits: 30 };
    const be = new SimBackend(params, { noise: false });
    const live = new Set<unknown>();
    const track = be as unknown as Record<string, (...a: unknown[]) => unknown>;
    for (const m of ['clone', 'add', 'mulConst', 'mulPlain', 'multiply', 'square', 'rotate', 'encryptVec', 'deserialize']) {
      const f = track[m].bind(be);
      track[m] = (...a: unknown[]) => {
        const r = f(...a);
        live.add(r);
        return r;
      };
    }
    const free = be.free.bind(be) as (c: unknown) => void;
    (be as unknown as { free: (c: unknown) => void }).free = (c: unknown) => {
      expect(live.delete(c), 'a ciphertext freed twice or never made').to.equal(true);
      free(c);
    };
    const split = await heldOutSplit(ckpt);
    const n = 4;
    const client = new SimClient(params);
    const input = client.encrypt(encodeInputs(ckpt.graph, split.x.subarray(0, n * 4), n).values).map((b) => be.deserialize(b));
    const refresher = new ClientRefresher(be, client);
    const { output } = evaluateSequenceModel(be, ckpt.graph, ckpt.weights, ckpt.ranges, input, { levels: { ensure: refresher.ensure as never, ms: () => refresher.ms } });
    expect(refresher.count).to.be.above(0);
    expect(live.size).to.equal(input.length + output.length);
  });

  it('without refresh, a network deeper than the chain is refused with depth needed vs available and the options', async () => {
    const params = join(tmp.path, 'params.json');
    writeFileSync(params, JSON.stringify({ poly_modulus_degree: 8192, coeff_modulus_bits: [40, 30, 30, 30, 30, 40], scale_bits: 30 }));
    let err: unknown = null;
    try {
      await validateSequence(loadCheckpoint(out), { samples: 4, params });
    } catch (e) {
      err = e;
    }
    expect(err).to.be.instanceOf(HepolyError);
    expect((err as Error).message).to.match(/needs depth \d+ but these primes give 4 levels.*--refresh client/);
  });

  it('the CLI dispatches a transformer checkpoint (simulated: --mode simulate, client refresh, JSON report)', () => {
    const r = hepoly(['he-validate', out, '--samples', '3', '--mode', 'simulate', '--refresh', 'client', '--json']);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.json!.agreement).to.equal(1);
    expect(r.json!.refreshes as number).to.be.above(0);
  });

  it('the CLI refuses --params auto without --refresh when no secure ring holds the depth, naming the options', () => {
    const r = hepoly(['he-validate', out, '--samples', '3']);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(/^error: no 128-bit-secure CKKS parameters fit this network: it needs multiplicative depth \d+ .*the largest secure ring \(N=32768\) allows 881 bits, i\.e\. depth \d+\. Options: --refresh client/);
  });
});
