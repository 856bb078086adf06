import { expect } from 'chai';
import { copyFileSync, existsSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { hepoly } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';
import { blockSize, GradientEvaluator, GradientKeyHolder, gradientParams, MASK_BOUND } from '../../src/federated/vertical/he-gradient.js';
import { decodeMessage } from '../../src/federated/wire.js';
import { CkksContext, newSeal } from '../../src/he/seal.js';
import { keyLevelContext } from '../queue/secret-key-check.js';
import { alignment, hashId, PsiKey, psiAnswer, psiRows, PsiSender } from '../../src/federated/vertical/psi.js';
import { loadCheckpoint } from '../../src/train/checkpoint.js';
import { HepolyError } from '../../src/util/errors.js';
import { releaseColumns } from '../../src/federated/vertical/bank.js';
import { X_MAX } from '../../src/federated/vertical/common.js';
import { evaluate } from '../../src/api/evaluate.js';
import { heValidate } from '../../src/api/he-validate.js';
import { exportHeArtifacts } from '../../src/deploy/export.js';
import { evaluateSplit, heldOutSplit, toParams } from '../../src/train/evaluate.js';
import { stratifiedSplit } from '../../src/data/index.js';

/** Some rows of a held-out split. */
function pick(s: { x: Float32Array; y: Int32Array; count: number }, rows: Int32Array): { x: Float32Array; y: Int32Array; count: number } {
  const F = s.x.length / s.count;
  const x = new Float32Array(rows.length * F);
  rows.forEach((r, i) => x.set(s.x.subarray(r * F, (r + 1) * F), i * F));
  return { x, y: Int32Array.from(rows, (r) => s.y[r]), count: rows.length };
}

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

  it('ECDH-PSI: the bank learns the intersection, the network only sizes; trying every possible ID against all it received finds nothing more', () => {
    const id = (n: number) => `ACC${String(n).padStart(4, '0')}`;
    const space = Array.from({ length: 100 }, (_, n) => id(n)); // every ID either side could hold
    const networkRows = [3, 7, 3, 11, 50, 7, 99].map(id); // 50 and 99: only the network has them
    const bankIds = [7, 11, 12, 80, 3].map(id); // 12 and 80: only the bank has them
    const where = { file: 'bank.csv', field: 'federated.parties[1].key', recipeFile: 'r.yaml' };
    const sender = new PsiSender(networkRows);
    const bankKey = new PsiKey();
    const first = sender.first(); // network -> bank (with sender.idIndex, sealed)
    const second = psiAnswer(bankKey, bankIds, where); // bank -> network
    const third = sender.third(second, 'bank'); // network -> bank, sealed
    const rows = psiRows(bankKey.reblind(first, 'test'), third, sender.idIndex);
    expect(Array.from(rows.rowOf)).to.deep.equal([4, 0, 4, 1, -1, 0, -1]);
    expect(alignment(rows, bankIds.length, where)).to.include({ matched: 5, maxMultiplicity: 2 });

    const points = (b: Uint8Array) => Array.from({ length: b.length / 32 }, (_, i) => Buffer.from(b.subarray(i * 32, i * 32 + 32)).toString('hex'));
    const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
    const one = (key: PsiKey, g: string) => points(key.blindIds([g]))[0];
    // sizes only: one point per distinct network ID (no multiplicities), one per bank row
    expect([first, second, third].map((m) => points(m).length)).to.deep.equal([5, 5, 5]);
    expect(new Set([first, second, third].flatMap(points)).size, 'no point repeats across the messages').to.equal(15);
    const plain = Buffer.concat([first, second, third]).toString('latin1');
    for (const g of space) expect(plain.includes(g), g).to.equal(false);

    // the network receives only message 2: with its scalar a, no guessed ID matches any of its points
    const received = new Set(points(second));
    expect(space.filter((g) => received.has(hex(hashId(g))) || received.has(one(sender.key, g)))).to.deep.equal([]);
    // the bank, with its scalar b, recognizes in messages 1 and 3 exactly the intersection
    const firstSet = new Set(points(first));
    const thirdSet = new Set(points(third));
    const reblinded = new Set(points(bankKey.reblind(first, 'test')));
    expect(space.filter((g) => firstSet.has(hex(hashId(g))) || firstSet.has(one(bankKey, g)) || thirdSet.has(hex(hashId(g))) || thirdSet.has(one(bankKey, g)))).to.deep.equal([]);
    expect(points(third).filter((p) => reblinded.has(p))).to.have.length(3); // 3, 7, 11

    // fresh scalars per run: nobody can link one run's points to the next run's
    expect(points(new PsiSender(networkRows).first()).filter((p) => firstSet.has(p))).to.deep.equal([]);

    expect(() => alignment({ rowOf: Int32Array.of(-1, -1, -1), idIndex: Int32Array.of(0, 1, 2) }, 2, where)).to.throw(HepolyError, /bank\.csv \(federated\.parties\[1\]\.key in r\.yaml\): none of its 2 IDs match the label holder's 3 rows/);
    expect(() => psiAnswer(bankKey, [id(1), id(2), id(1)], where)).to.throw(HepolyError, /ID "ACC0001" appears twice \(rows 2 and 4\)/);
  });

  it("under DP a bank releases each ID's columns once: the same noised row for every row naming it, noise alone for an ID it lacks", () => {
    // bank rows (accounts): 3, two columns; label-holder rows name IDs 0, 1, 0, 2, 3 (the bank lacks ID 2)
    const local = {
      party: { name: 'bank', path: 'bank.csv', key: 'account' },
      index: 1,
      table: { file: 'bank.csv', columns: ['account', 'f', 'g'], rows: [['A'], ['B'], ['C']] },
      features: ['f', 'g'],
      keyCol: 0,
      x: Float32Array.of(1, 0, 0, 5, -1, 2),
    } as unknown as Parameters<typeof releaseColumns>[0];
    const align = { rowOf: Int32Array.of(2, 0, 2, -1, 1), idIndex: Int32Array.of(0, 1, 0, 2, 3), matched: 4, maxMultiplicity: 2 };
    const plain = releaseColumns(local, align, undefined, () => undefined);
    expect(Array.from(plain.x.subarray(6, 8))).to.deep.equal([0, 0]); // no DP: zeros where the bank lacks the ID
    const dp = releaseColumns(local, align, { epsilon: 8, delta: 1e-5, clip: 1 }, () => undefined);
    expect(dp.epsilon!).to.be.at.most(8).and.above(7.9);
    expect(Array.from(dp.x.subarray(0, 2))).to.deep.equal(Array.from(dp.x.subarray(4, 6))); // one release per ID
    expect(Array.from(dp.x.subarray(6, 8))).to.not.deep.equal([0, 0]); // the missing ID gets noise
    for (let r = 0; r < 5; r++) expect(Math.hypot(dp.x[2 * r], dp.x[2 * r + 1])).to.be.at.most(X_MAX + 1e-9);
    // the noise is N(0, (sigma X_MAX)^2) per column: measured on 2000 IDs the bank lacks (small enough not to clip)
    const many = { rowOf: new Int32Array(2000).fill(-1), idIndex: Int32Array.from({ length: 2000 }, (_, i) => i), matched: 0, maxMultiplicity: 0 };
    const r = releaseColumns(local, many, { epsilon: 300, delta: 1e-5, clip: 1 }, () => undefined);
    const std = Math.sqrt(r.x.reduce((a, v) => a + v * v, 0) / r.x.length);
    expect(std / (r.sigma! * X_MAX)).to.be.within(0.93, 1.07);
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
    writeFileSync(join(tmp.path, 'run.json'), JSON.stringify(j));
  });

  it('eval, he-validate and export refuse the vertical checkpoint without its joined table, naming the file and the fix', async () => {
    const dir = join(tmp.path, 'ckpt');
    const joined = join(tmp.path, 'joined.csv');
    renameSync(joined, `${joined}.away`);
    try {
      const message = /ckpt: a vertical federated checkpoint .*columns of several parties \(the label holder: 4, bank-a: 5, bank-b: 5\): eval needs them joined, and its joined table .*joined\.csv was not found.*Fix: put the joined table at .*joined\.csv .*make-data payments.*--data DIR/;
      await evaluate(dir).then(
        () => expect.fail('eval ran without the joined table'),
        (e: Error) => expect(e).to.be.instanceOf(HepolyError).with.property('message').that.matches(message),
      );
      await heValidate(dir).then(
        () => expect.fail('he-validate ran without the joined table'),
        (e: Error) => expect(e.message).to.match(/a vertical federated checkpoint .*he-validate needs them joined.*joined\.csv was not found/),
      );
      const out = join(tmp.path, 'export');
      await exportHeArtifacts({ checkpoint: dir, out } as Parameters<typeof exportHeArtifacts>[0]).then(
        () => expect.fail('export ran without the joined table'),
        (e: Error) => expect(e.message).to.match(/export needs them joined.*joined\.csv was not found/),
      );
      expect(existsSync(out), 'export claimed no --out folder').to.equal(false);
      // a table without the banks' columns (here the label holder's own file) is refused by column
      copyFileSync(join(tmp.path, 'transactions.csv'), joined);
      await evaluate(dir).then(
        () => expect.fail('eval ran on a table without the bank columns'),
        (e: Error) => expect(e.message).to.match(/joined\.csv lacks the model columns "bank-a\.closed", .*\(10 in all\)\. Fix:/),
      );
    } finally {
      renameSync(`${joined}.away`, joined);
    }
    expect((loadCheckpoint(dir).recipe.data as { path: string }).path, "the checkpoint's recipe names the joined table").to.equal(joined);
  });

  it('federate join writes the joined table from the parties\' own files: the generator\'s table on every column, and eval reads it', async () => {
    const joined = join(tmp.path, 'joined.csv');
    renameSync(joined, `${joined}.generated`);
    try {
      const r = hepoly(['federate', 'join', join(tmp.path, 'vfl.yaml'), '--json']);
      expect(r.code, r.stderr).to.equal(0);
      expect(r.stdout).to.match(/joined table .*joined\.csv: 800 rows, 14 feature columns \+ is_anomaly; bank-a lacks \d+ IDs \(column means there\), bank-b lacks \d+ IDs/);
      const t = r.json as { file: string; unmatched: Record<string, number> };
      expect(t.file).to.equal(joined);
      const table = (f: string) => {
        const [head, ...rows] = readFileSync(f, 'utf8').trim().split('\n').map((l) => l.split(','));
        return { head, rows };
      };
      const ours = table(joined);
      const generated = table(`${joined}.generated`);
      expect(ours.rows.length).to.equal(generated.rows.length);
      // made independently (make-data from its accounts, join from the CSVs): the same values
      for (const [c, name] of ours.head.entries()) {
        const g = generated.head.indexOf(name);
        expect(g, name).to.be.at.least(0);
        ours.rows.forEach((row, i) => expect(Number(row[c]), `${name}, row ${i + 1}`).to.be.closeTo(Number(generated.rows[i][g]), 1e-6 * Math.max(1, Math.abs(Number(row[c])))));
      }
      expect(t.unmatched['bank-a'] + t.unmatched['bank-b']).to.equal(800);
      // its own earlier output is replaced; any other file is refused and left as it was
      expect(hepoly(['federate', 'join', join(tmp.path, 'vfl.yaml')]).code).to.equal(0);
      const foreign = join(tmp.path, 'notes.csv');
      writeFileSync(foreign, 'a,b\n1,2\n');
      const refused = hepoly(['federate', 'join', join(tmp.path, 'vfl.yaml'), '--out', foreign]);
      expect(refused.code).to.equal(1);
      expect(refused.stderr).to.match(/notes\.csv exists and is not a joined table this command wrote for .*vfl\.yaml \(its columns are a, b\); nothing was written\. Pass --out with another file/);
      expect(readFileSync(foreign, 'utf8')).to.equal('a,b\n1,2\n');
      const generatedTable = hepoly(['federate', 'join', join(tmp.path, 'vfl.yaml'), '--out', `${joined}.generated`]);
      expect(generatedTable.code).to.equal(1);
      expect(generatedTable.stderr).to.match(/already holds every column a checkpoint of this recipe reads/);
      expect((await evaluate(join(tmp.path, 'ckpt'))).samples).to.be.above(0);
      const horizontal = hepoly(['federate', 'join', 'recipes/cancer-fl.yaml']);
      expect(horizontal.code).to.equal(2);
      expect(horizontal.stderr).to.match(/cancer-fl\.yaml: federated\.partition: horizontal: .*nothing to join/);
    } finally {
      renameSync(`${joined}.generated`, joined);
    }
  });

  it("the assembled model on the joined table scores the run's held-out rows as the cross-party inference did; he-validate agrees on ciphertexts", async function () {
    this.timeout(600000);
    const dir = join(tmp.path, 'ckpt');
    const ckpt = loadCheckpoint(dir);
    const run = ckpt.metrics[ckpt.metrics.length - 1];
    const reported = JSON.parse(readFileSync(join(tmp.path, 'run.json'), 'utf8')) as { val_accuracy: number; test_accuracy: number };
    const e = await evaluate(dir);
    // the run's held-out 30%: its validation and test halves (label-holder.ts splitRows)
    const held = await heldOutSplit(ckpt);
    const halves = stratifiedSplit(held.y, 2, 0.5, ckpt.recipe.seed + 1);
    expect(e.samples).to.equal(held.count).and.equal(halves.train.length + halves.validation.length);
    const params = toParams(ckpt.weights);
    const score = (rows: Int32Array) => evaluateSplit(ckpt.graph, params, pick(held, rows));
    const val = score(halves.train);
    const test = score(halves.validation);
    for (const t of params.values()) t.dispose();
    // the split model summed the banks' outputs in fixed point: the same predictions, losses within that rounding
    expect(val.accuracy).to.equal(reported.val_accuracy);
    expect(val.accuracy).to.be.closeTo(run.val_accuracy, 1e-6); // metrics.csv holds 6 digits
    expect(val.loss).to.be.closeTo(run.val_loss, 1e-4);
    expect(test.accuracy).to.equal(reported.test_accuracy);
    expect(e.accuracy * e.samples).to.be.closeTo(val.accuracy * halves.train.length + test.accuracy * halves.validation.length, 1e-6);

    const he = await heValidate(dir, { samples: 2, packing: 'sample', workers: 1 });
    expect(he).to.include({ mode: 'encrypt', samples: 2, agreement: 1 });
    // a finished vertical run planned federated.rounds epochs (2), not train.epochs
    expect(e).to.include({ trained_epochs: 2, planned_epochs: 2, training_complete: true });
    expect(he).to.include({ trained_epochs: 2, planned_epochs: 2, training_complete: true });
    expect(he.poly_modulus_degree).to.be.at.most(8192);
    expect(he.max_abs_error).to.be.below(1e-2);
  });

  it("the coordinator relayed the label holder's ciphertexts and public keys, never its secret key", async function () {
    this.timeout(600000);
    // a failed load can leave SEAL's wasm heap inconsistent, so a probe that fails retires its
    // instance; one that loads leaves it clean for the next. Each kind has instances of its own:
    // SecretKey probes (nearly all fail) on a context of the key level only, the cheapest SEAL
    // checks a secret key against; CipherText probes (nearly all load) on a full context
    type Instance = { seal: Awaited<ReturnType<typeof newSeal>>; context: ReturnType<typeof keyLevelContext> };
    const clean: Record<'SecretKey' | 'CipherText', Instance | null> = { SecretKey: null, CipherText: null };
    const fresh = async (kind: 'SecretKey' | 'CipherText'): Promise<Instance> => {
      const seal = await newSeal();
      return { seal, context: kind === 'SecretKey' ? keyLevelContext(seal, gradientParams()) : CkksContext.create(seal, gradientParams()).context };
    };
    const probe = async (b: Uint8Array, kind: 'SecretKey' | 'CipherText') => {
      // SEAL refuses anything without its header magic 0xA15E before parsing further
      if (b.length < 16 || b[0] !== 0x5e || b[1] !== 0xa1) return false;
      const { seal, context } = clean[kind] ?? (await fresh(kind));
      clean[kind] = null;
      try {
        const loaded = kind === 'SecretKey' ? seal.SecretKey() : seal.CipherText();
        loaded.loadArray(context, b);
        loaded.delete();
        clean[kind] = { seal, context };
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

  it("a bank whose columns differ from the recipe's ends the run with one message naming its file, the field and its columns", () => {
    const recipe = writeVerticalRecipe(tmp.path);
    const text = readFileSync(recipe, 'utf8');
    writeFileSync(recipe, text.replace(/(name: bank-a, path: [^,]+, key: account)\}/, '$1, features: [closed, frozen]}'));
    const r = hepoly(['federate', recipe]);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(/^error: .*bank-a\.csv \(federated\.parties\[1\]\.features in .*vfl\.yaml\): its columns differ from the recipe's: no column "frozen"\. Set federated\.parties\[1\]\.features to columns of the file \(account, closed, /m);
    expect(r.stderr).to.not.match(/    at /);
  });

  it('a bank whose IDs match none of the network\'s ends every process with one clear message', () => {
    const bad = readFileSync(join(tmp.path, 'bank-b.csv'), 'utf8').replace(/ACC/g, 'XYZ');
    writeFileSync(join(tmp.path, 'bank-b.csv'), bad);
    const r = hepoly(['federate', writeVerticalRecipe(tmp.path)]);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(/^error: .*bank-b\.csv \(federated\.parties\[2\]\.key in .*vfl\.yaml\): none of its \d+ IDs match the label holder's 800 rows/m);
  });
});
