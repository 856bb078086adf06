import { expect } from 'chai';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { hepoly } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';
import { blockSize, GradientEvaluator, GradientKeyHolder, gradientParams, MASK_BOUND } from '../../src/federated/vertical/he-gradient.js';
import { decodeMessage } from '../../src/federated/wire.js';
import { CkksContext, newSeal } from '../../src/he/seal.js';
import { alignRows, idToken } from '../../src/federated/vertical/psi.js';
import { loadCheckpoint } from '../../src/train/checkpoint.js';
import { HepolyError } from '../../src/util/errors.js';

export function writeVerticalRecipe(dir: string, extra = ''): string {
  const file = join(dir, 'vfl.yaml');
  writeFileSync(
    file,
    `name: vfl-test
seed: 3
data: {source: csv, path: ${join(dir, 'transactions.csv')}, label: is_anomaly, split: {validation: 0.3}}
model: {kind: mlp, hidden: [4], activation: {kind: quad}}
train: {batch: 256, optimizer: {kind: adam, lr: 0.05}}
federated:
  partition: vertical
  parties:
    - {name: network, path: ${join(dir, 'transactions.csv')}, key: receiver_account, label: true, features: [amount_usd_log, amount_dev, night, cross_border]}
    - {name: bank-a, path: ${join(dir, 'bank-a.csv')}, key: account}
    - {name: bank-b, path: ${join(dir, 'bank-b.csv')}, key: account}
  rounds: 2
  round_timeout: 30
${extra}`,
  );
  return file;
}

describe('federated/vertical: the encrypted backward pass', () => {
  it("a bank's masked product, unmasked, is X^T dZ; the label holder sees it only masked", async function () {
    this.timeout(60000);
    const f = 5;
    const h = 4;
    const rows = 150;
    const holder = await GradientKeyHolder.create([blockSize(f, h)]);
    const bank = await GradientEvaluator.create(holder.publicKey, holder.galoisKeys);
    const dz = Float64Array.from({ length: rows * h }, (_, i) => Math.sin(i * 0.7));
    const x = Float64Array.from({ length: rows * f }, (_, i) => Math.cos(i * 1.3));
    const { ciphertext, mask } = bank.maskedProduct(holder.encryptCutGradient(dz, rows, h, f), x, rows, f, h);
    const seen = holder.decryptMasked(ciphertext, f * h);
    for (let a = 0; a < f; a++) {
      for (let j = 0; j < h; j++) {
        let ref = 0;
        for (let r = 0; r < rows; r++) ref += x[r * f + a] * dz[r * h + j];
        expect(seen[a * h + j] - mask[a * h + j]).to.be.closeTo(ref, 1e-4);
        // what the label holder decrypts is the product plus a uniform mask of +-2^30
        expect(Math.abs(seen[a * h + j] - ref)).to.be.above(1e3);
        expect(Math.abs(mask[a * h + j])).to.be.at.most(MASK_BOUND);
      }
    }
  });

  it('ID alignment matches salted tokens and refuses a bank whose IDs match none', () => {
    const salt = Uint8Array.from({ length: 32 }, (_, i) => i);
    const tokens = ['A1', 'A2', 'A1', 'A9'].map((id) => idToken(salt, id));
    const a = alignRows(tokens, salt, ['A2', 'A1', 'A5'], { file: 'bank.csv', field: 'federated.parties[1].key', recipeFile: 'r.yaml' });
    expect(Array.from(a.rowOf)).to.deep.equal([1, 0, 1, -1]);
    expect(a.maxMultiplicity).to.equal(2);
    expect(() => alignRows(tokens, salt, ['B1', 'B2'], { file: 'bank.csv', field: 'federated.parties[1].key', recipeFile: 'r.yaml' })).to.throw(
      HepolyError,
      /bank\.csv \(federated\.parties\[1\]\.key in r\.yaml\): none of its 2 IDs match the label holder's 4 rows/,
    );
    expect(() => alignRows(tokens, Uint8Array.of(9), ['A1', 'A2'], { file: 'b.csv', field: 'k', recipeFile: 'r' })).to.throw(HepolyError, /none of its 2 IDs match/);
  });
});

describe('federated/vertical: hepoly federate (network + 2 banks as processes)', function () {
  this.timeout(300000);
  const tmp = tempDir('hepoly-vfl-');
  after(() => tmp.cleanup());
  before(() => {
    const r = hepoly(['make-data', 'payments', '--rows', '800', '--seed', '5', '--out', tmp.path]);
    expect(r.code, r.stderr).to.equal(0);
  });

  it('trains the split network, infers across parties and writes the assembled checkpoint', () => {
    const r = hepoly(['federate', writeVerticalRecipe(tmp.path), '--out', join(tmp.path, 'ckpt'), '--json'], { env: { HEPOLY_FED_RECORD_DIR: join(tmp.path, 'record') } });
    expect(r.code, r.stderr).to.equal(0);
    const j = r.json!;
    expect(j).to.include({ partition: 'vertical', parties: 3, rounds: 2 });
    for (const k of ['val_accuracy', 'test_accuracy', 'auprc', 'bytes_per_round']) expect(j[k], k).to.be.a('number');
    // anomalies are ~5%: the model must rank them above chance
    expect(j.auprc as number).to.be.above(0.06);
    const ckpt = loadCheckpoint(join(tmp.path, 'ckpt'));
    expect(ckpt.preprocess.features).to.deep.equal([
      'amount_usd_log', 'amount_dev', 'night', 'cross_border',
      ...['bank-a', 'bank-b'].flatMap((b) => ['closed', 'suspended', 'name_mismatch', 'kyc_risk', 'age_days'].map((f) => `${b}.${f}`)),
    ]);
    expect(ckpt.weights.get('dense1/kernel')!.shape).to.deep.equal([14, 4]);
  });

  it("the coordinator relayed the label holder's ciphertexts and public keys, never its secret key", async function () {
    this.timeout(600000);
    // a failed load can leave SEAL's wasm heap inconsistent, so every blob gets an instance of its own
    const probe = async (b: Uint8Array, kind: 'SecretKey' | 'CipherText') => {
      // SEAL refuses anything without its header magic 0xA15E before parsing further
      if (b.length < 16 || b[0] !== 0x5e || b[1] !== 0xa1) return false;
      const seal = await newSeal();
      const ctx = CkksContext.create(seal, gradientParams());
      try {
        (kind === 'SecretKey' ? seal.SecretKey() : seal.CipherText()).loadArray(ctx.context, b);
        return true;
      } catch {
        return false;
      }
    };
    // positive control: a secret key of these parameters is recognized
    const seal = await newSeal();
    expect(await probe(seal.KeyGenerator(CkksContext.create(seal, gradientParams()).context).secretKey().saveArray(), 'SecretKey')).to.equal(true);
    let ciphertexts = 0;
    for (const f of readdirSync(join(tmp.path, 'record'))) {
      for (const b of decodeMessage(readFileSync(join(tmp.path, 'record', f))).blobs) {
        expect(await probe(b, 'SecretKey'), f).to.equal(false);
        if (f.includes('_mail') && (await probe(b, 'CipherText'))) ciphertexts++;
      }
    }
    // the deserializer works on what was recorded: the encrypted cut gradients load as ciphertexts
    expect(ciphertexts).to.be.above(3);
  });

  it('with dp, the reported epsilon is the larger of the label side and the banks\' side, within the budget', () => {
    const r = hepoly(['federate', writeVerticalRecipe(tmp.path, '  dp: {epsilon: 4, delta: 1.0e-5, clip: 1.0}\n'), '--out', join(tmp.path, 'dp'), '--json']);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.json!.epsilon as number).to.be.above(3.9).and.at.most(4);
    expect(r.stdout).to.match(/dp \(labels, towards the banks\): noise multiplier/);
  });

  it('a bank whose IDs match none of the network\'s ends every process with one clear message', () => {
    const bad = readFileSync(join(tmp.path, 'bank-b.csv'), 'utf8').replace(/ACC/g, 'XYZ');
    writeFileSync(join(tmp.path, 'bank-b.csv'), bad);
    const r = hepoly(['federate', writeVerticalRecipe(tmp.path)]);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(/^error: .*bank-b\.csv \(federated\.parties\[2\]\.key in .*vfl\.yaml\): none of its \d+ IDs match the label holder's 800 rows/m);
  });
});
