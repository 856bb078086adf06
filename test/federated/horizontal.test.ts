import { expect } from 'chai';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { hepoly } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';
import { decodeMessage, encodeMessage } from '../../src/federated/wire.js';
import { aggregationParams } from '../../src/federated/ckks-aggregate.js';
import { CkksContext, loadSeal } from '../../src/he/seal.js';
import { loadCheckpoint } from '../../src/train/checkpoint.js';
import { flatten } from '../../src/federated/horizontal/weights.js';
import { initWeights } from '../../src/models/tf-interpreter.js';
import { privacySpent } from '../../src/federated/accountant.js';

/**
 * Three hospitals as separate processes on loopback (the built CLI, `hepoly federate`), a tiny
 * MLP, two rounds, CKKS N=4096. Each run is checked from the outside: what the parties
 * contributed and decrypted (HEPOLY_FED_DUMP_DIR), and everything the coordinator received
 * (HEPOLY_FED_RECORD_DIR).
 */
const dataset = fileURLToPath(new URL('../../datasets/breast-cancer-wisconsin.csv', import.meta.url));
const PARTIES = ['hospital-a', 'hospital-b', 'hospital-c'];

function writeRecipe(dir: string, extra = ''): string {
  const file = join(dir, 'fl.yaml');
  writeFileSync(
    file,
    `name: fl-test
seed: 7
data: {source: csv, path: ${dataset}, label: diagnosis, normalize: standard, split: {validation: 0.2}}
model: {kind: mlp, hidden: [4], activation: {kind: quad}}
train: {batch: 32, optimizer: {kind: adam, lr: 0.01}, clip: 1.0}
federated:
  partition: horizontal
  split: {scheme: iid}
  parties:
${PARTIES.map((p) => `    - {name: ${p}, path: ${join(dir, `${p}.csv`)}}`).join('\n')}
  rounds: 2
  aggregation: he
  secure_aggregation: true
  he: {poly_modulus_degree: 4096}
${extra}`,
  );
  return file;
}

const readF64 = (p: string) => {
  const b = readFileSync(p);
  return new Float64Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
};

describe('federated/horizontal: hepoly federate (3 party processes, CKKS N=4096)', function () {
  this.timeout(240000);
  const tmp = tempDir('hepoly-fl-');
  after(() => tmp.cleanup());

  let run: ReturnType<typeof hepoly>;
  const dumpDir = join(tmp.path, 'dump');
  const recordDir = join(tmp.path, 'record');
  before(() => {
    const recipe = writeRecipe(tmp.path);
    run = hepoly(['federate', recipe, '--out', join(tmp.path, 'ckpt'), '--json'], { env: { HEPOLY_FED_DUMP_DIR: dumpDir, HEPOLY_FED_RECORD_DIR: recordDir } });
  });

  it('ends with a normal checkpoint and the JSON result', () => {
    expect(run.code, run.stderr).to.equal(0);
    const j = run.json!;
    expect(j).to.include({ partition: 'horizontal', parties: 3, rounds: 2, checkpoint: join(tmp.path, 'ckpt') });
    for (const k of ['val_accuracy', 'test_accuracy', 'auprc', 'bytes_per_round', 'seconds']) expect(j[k], k).to.be.a('number');
    expect(j.val_accuracy as number).to.be.above(0.7);
    expect(j.epsilon).to.equal(null);
    const ev = hepoly(['eval', join(tmp.path, 'ckpt'), '--json']);
    expect(ev.code, ev.stderr).to.equal(0);
    expect(ev.json!.accuracy).to.equal(j.test_accuracy);
    // a finished federated run planned federated.rounds (2), not train.epochs (the default 10)
    expect(ev.json).to.include({ trained_epochs: 2, planned_epochs: 2, training_complete: true });
    expect(ev.stdout).to.not.match(/stopped before its end/);
  });

  it('the HE-aggregated model equals plain FedAvg of the same updates (within fixed-point and CKKS error)', () => {
    const ckpt = loadCheckpoint(join(tmp.path, 'ckpt'));
    let w = flatten(initWeights(ckpt.graph, 7));
    for (let r = 1; r <= 2; r++) {
      const contributions = PARTIES.map((p) => readF64(join(dumpDir, `${p}-round-${r}.f64`)));
      const plain = contributions[0].map((_, i) => contributions.reduce((a, c) => a + c[i], 0));
      for (const p of PARTIES) {
        const decrypted = readF64(join(dumpDir, `${p}-sum-round-${r}.f64`));
        let maxErr = 0;
        for (let i = 0; i < plain.length; i++) maxErr = Math.max(maxErr, Math.abs(decrypted[i] - plain[i]));
        expect(maxErr, `${p} round ${r}`).to.be.below(3 * 2 ** -16);
      }
      const n = plain[w.length];
      w = w.map((x, i) => x + plain[i] / n);
    }
    const got = flatten(ckpt.weights);
    let maxErr = 0;
    for (let i = 0; i < w.length; i++) maxErr = Math.max(maxErr, Math.abs(got[i] - w[i]));
    expect(maxErr).to.be.below(1e-4);
  });

  it('the coordinator never held a secret key: nothing it received loads as a SEAL SecretKey', async () => {
    const seal = await loadSeal();
    const ctx = CkksContext.create(seal, aggregationParams(4096));
    const loads = (kind: 'SecretKey' | 'CipherText', bytes: Uint8Array): boolean => {
      const obj = kind === 'SecretKey' ? seal.SecretKey() : seal.CipherText();
      try {
        obj.loadArray(ctx.context, bytes);
        return true;
      } catch {
        return false;
      } finally {
        obj.delete();
      }
    };
    // positive control: a real secret key, sent the way any message is, is found
    const keygen = seal.KeyGenerator(ctx.context);
    const control = decodeMessage(encodeMessage({ header: { from: 'x' }, blobs: [keygen.secretKey().saveArray()] }));
    expect(loads('SecretKey', control.blobs[0])).to.equal(true);
    const files = readdirSync(recordDir);
    expect(files.length).to.be.above(10);
    let blobs = 0;
    let ciphertexts = 0;
    for (const f of files) {
      const m = decodeMessage(readFileSync(join(recordDir, f)));
      for (const b of m.blobs) {
        blobs++;
        expect(loads('SecretKey', b), `${f}`).to.equal(false);
        if (loads('CipherText', b)) ciphertexts++;
      }
    }
    // the deserializer works on what was recorded: the encrypted updates load as ciphertexts
    expect(ciphertexts).to.be.above(5);
    expect(blobs).to.be.above(ciphertexts);
    // the sealed key envelopes went through the coordinator, unreadable to it
    expect(files.some((f) => f.includes('_mail'))).to.equal(true);
  });

  it('a party that dies mid-round is dropped and the round is redone without it', () => {
    const dir = join(tmp.path, 'drop');
    const recipe = writeRecipe(tmp.path, '  round_timeout: 4\n');
    const dump = join(tmp.path, 'dump-drop');
    const r = hepoly(['federate', recipe, '--out', dir, '--json'], { env: { HEPOLY_FED_TEST_EXIT: 'hospital-c:round-2', HEPOLY_FED_DUMP_DIR: dump } });
    expect(r.code, r.stderr).to.equal(0);
    expect(r.json!.dropped).to.deep.equal(['hospital-c']);
    // round 2's sum is exactly the two survivors' contributions
    const a = readF64(join(dump, 'hospital-a-round-2.f64'));
    const b = readF64(join(dump, 'hospital-b-round-2.f64'));
    const sum = readF64(join(dump, 'hospital-a-sum-round-2.f64'));
    for (let i = 0; i < a.length; i++) expect(sum[i]).to.be.closeTo(a[i] + b[i], 2 * 2 ** -16);
    expect(loadCheckpoint(dir).metrics.length).to.equal(2);
  });

  it('distributed DP: the accountant reports the (epsilon, delta) spent, within the budget', () => {
    const recipe = writeRecipe(tmp.path, '  dp: {epsilon: 8, delta: 1.0e-5, clip: 1.0, sample_rate: 0.2}\n');
    const r = hepoly(['federate', recipe, '--out', join(tmp.path, 'dp'), '--json']);
    expect(r.code, r.stderr).to.equal(0);
    const eps = r.json!.epsilon as number;
    expect(eps).to.be.above(7.9).and.at.most(8);
    expect(r.json!.delta).to.equal(1e-5);
    const sigma = Number(/noise multiplier ([\d.]+)/.exec(r.stdout)![1]);
    expect(privacySpent(0.2, sigma, 2, 1e-5).epsilon).to.be.closeTo(eps, 0.01);
  });
});
