import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { makePayments } from '../../src/federated/payments.js';
import { tempDir } from '../helpers/tmp.js';

/**
 * `hepoly make-data payments` against its documented generative model (docs/federated.md, "The
 * payments data set"): seeded, about 5% anomalies, and an anomaly needs both sides (the
 * sigmoid's product term): a suspicious payment into a clean account, or a plain payment into
 * a flagged one, is rarely anomalous; both together often are.
 */
describe('federated/payments: the synthetic anomaly data set', () => {
  const tmp = tempDir('hepoly-payments-');
  after(() => tmp.cleanup());

  const table = (file: string) => {
    const [head, ...rows] = readFileSync(file, 'utf8').trim().split('\n').map((l) => l.split(','));
    return { head, rows };
  };

  it('is seeded: the same seed writes the same files, another seed other rows', () => {
    const read = (dir: string) => ['transactions.csv', 'bank-a.csv', 'bank-b.csv', 'joined.csv'].map((f) => readFileSync(join(dir, f), 'utf8'));
    makePayments({ rows: 300, seed: 9, out: join(tmp.path, 's1') });
    makePayments({ rows: 300, seed: 9, out: join(tmp.path, 's2') });
    makePayments({ rows: 300, seed: 10, out: join(tmp.path, 's3') });
    expect(read(join(tmp.path, 's2'))).to.deep.equal(read(join(tmp.path, 's1')));
    expect(read(join(tmp.path, 's3'))[0]).to.not.equal(read(join(tmp.path, 's1'))[0]);
  });

  it('about 5% anomalies, and an anomaly needs a transaction-side and an account-side signal', () => {
    const out = join(tmp.path, 'big');
    const { anomalies } = makePayments({ rows: 6000, seed: 1, out });
    const tx = table(join(out, 'transactions.csv'));
    expect(tx.head).to.deep.equal(['txn_id', 'timestamp', 'hour', 'amount', 'currency', 'amount_usd_log', 'amount_dev', 'night', 'cross_border', 'sender_account', 'receiver_account', 'is_anomaly']);
    expect(anomalies / 6000).to.be.within(0.03, 0.08);
    const accounts = new Map<string, number[]>();
    for (const bank of ['bank-a', 'bank-b']) {
      const t = table(join(out, `${bank}.csv`));
      expect(t.head).to.deep.equal(['account', 'closed', 'suspended', 'name_mismatch', 'kyc_risk', 'age_days']);
      for (const r of t.rows) accounts.set(r[0], r.slice(1).map(Number));
    }
    const col = (name: string) => tx.head.indexOf(name);
    const groups = { neither: [0, 0], paymentOnly: [0, 0], accountOnly: [0, 0], both: [0, 0] };
    for (const r of tx.rows) {
      const [closed, suspended, mismatch, kyc] = accounts.get(r[col('receiver_account')])!;
      const flagged = closed + suspended + mismatch > 0;
      const clean = !flagged && kyc < 0.1;
      const suspicious = Number(r[col('night')]) === 1 || Number(r[col('amount_dev')]) > 2;
      const plain = Number(r[col('night')]) === 0 && Number(r[col('cross_border')]) === 0 && Number(r[col('amount_dev')]) < 0.5;
      const g = suspicious && flagged ? groups.both : suspicious && clean ? groups.paymentOnly : plain && flagged ? groups.accountOnly : plain && clean ? groups.neither : null;
      if (!g) continue;
      g[0] += Number(r[col('is_anomaly')]);
      g[1]++;
    }
    const rate = (g: number[]) => g[0] / g[1];
    for (const [name, g] of Object.entries(groups)) expect(g[1], `${name}: rows`).to.be.above(60);
    expect(rate(groups.neither)).to.be.below(0.02);
    expect(rate(groups.both)).to.be.above(0.3);
    // either side alone: far below both together
    expect(rate(groups.both)).to.be.above(5 * rate(groups.paymentOnly));
    expect(rate(groups.both)).to.be.above(5 * rate(groups.accountOnly));
  });
});
