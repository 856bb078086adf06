import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { makeRng, type Rng } from '../util/rng.js';
import { writeFileAtomic } from '../util/atomic-file.js';
import { toCsv } from './party-data.js';
import { HepolyError } from '../util/errors.js';

/**
 * A synthetic financial anomaly data set in PV4FAD's setting (docs/federated.md, "The payments
 * data set"): a payment network's transactions and the account tables of the two banks that
 * hold the receiving accounts. An anomaly needs both sides: a transaction-side signal (an
 * amount unusual for the sender, a night-time or cross-border payment) and an account-side
 * one (closed, suspended, name-mismatch reports, KYC risk). Neither side alone separates them.
 */
export interface PaymentsOptions {
  rows: number;
  seed: number;
  out: string;
}

const CURRENCIES = ['USD', 'EUR', 'GBP', 'JPY'];
const TO_USD: Record<string, number> = { USD: 1, EUR: 1.1, GBP: 1.3, JPY: 0.007 };

interface Account {
  id: string;
  bank: 'bank-a' | 'bank-b';
  closed: number;
  suspended: number;
  nameMismatch: number;
  kycRisk: number;
  ageDays: number;
  currency: string;
  /** the log of its holder's typical payment, in USD */
  typicalLog: number;
}

function makeAccount(i: number, rng: Rng): Account {
  const closed = rng.next() < 0.04 ? 1 : 0;
  const suspended = !closed && rng.next() < 0.04 ? 1 : 0;
  return {
    id: `ACC${String(i).padStart(6, '0')}`,
    bank: rng.next() < 0.55 ? 'bank-a' : 'bank-b',
    closed,
    suspended,
    nameMismatch: rng.next() < 0.06 ? 1 : 0,
    kycRisk: +(rng.next() ** 3).toFixed(3),
    ageDays: Math.round(30 + rng.next() * 3000),
    currency: CURRENCIES[rng.int(CURRENCIES.length)],
    typicalLog: 4 + 1.5 * rng.normal(),
  };
}

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

export function makePayments(opts: PaymentsOptions): { files: string[]; anomalies: number } {
  if (!Number.isInteger(opts.rows) || opts.rows < 100) throw new HepolyError(`make-data payments: --rows: expected an integer >= 100, found ${opts.rows}. Pass e.g. --rows 5000`, { exitCode: 2 });
  const rng = makeRng(opts.seed, 'payments');
  const accounts = Array.from({ length: Math.max(20, Math.round(opts.rows / 6)) }, (_, i) => makeAccount(i, rng));
  const start = Date.UTC(2026, 0, 1) / 1000;
  const tx: (string | number)[][] = [['txn_id', 'timestamp', 'hour', 'amount', 'currency', 'amount_usd_log', 'amount_dev', 'night', 'cross_border', 'sender_account', 'receiver_account', 'is_anomaly']];
  const receivers: Account[] = [];
  let anomalies = 0;
  for (let t = 0; t < opts.rows; t++) {
    const sender = accounts[rng.int(accounts.length)];
    let receiver = accounts[rng.int(accounts.length)];
    if (receiver === sender) receiver = accounts[(accounts.indexOf(sender) + 1) % accounts.length];
    const ts = start + Math.floor(rng.next() * 30 * 86400);
    // business hours mostly; a few payments at night
    const hour = rng.next() < 0.12 ? rng.int(6) : 8 + rng.int(12);
    const logUsd = sender.typicalLog + 0.6 * rng.normal() + (rng.next() < 0.08 ? 2.5 : 0);
    const currency = rng.next() < 0.8 ? sender.currency : CURRENCIES[rng.int(CURRENCIES.length)];
    const amount = Math.exp(logUsd) / TO_USD[currency];
    const dev = logUsd - sender.typicalLog;
    const night = hour < 6 ? 1 : 0;
    const cross = currency !== receiver.currency ? 1 : 0;
    const txSignal = 1.2 * Math.max(0, dev - 0.5) + 1.0 * night + 0.5 * cross;
    const accountSignal = 2.2 * receiver.closed + 2.2 * receiver.suspended + 1.6 * receiver.nameMismatch + 1.5 * receiver.kycRisk;
    // the product: an anomaly needs a suspicious payment into a suspicious account
    const p = sigmoid(-6 + 2.0 * txSignal * accountSignal + 0.3 * txSignal + 0.3 * accountSignal);
    const label = rng.next() < p ? 1 : 0;
    anomalies += label;
    receivers.push(receiver);
    tx.push([`T${String(t).padStart(7, '0')}`, ts, hour, +amount.toFixed(2), currency, +logUsd.toFixed(4), +dev.toFixed(4), night, cross, sender.id, receiver.id, label]);
  }
  const dir = resolve(opts.out);
  mkdirSync(dir, { recursive: true });
  const files = [join(dir, 'transactions.csv')];
  writeFileAtomic(files[0], toCsv(tx));
  for (const bank of ['bank-a', 'bank-b'] as const) {
    const rows: (string | number)[][] = [['account', 'closed', 'suspended', 'name_mismatch', 'kyc_risk', 'age_days']];
    for (const a of accounts) if (a.bank === bank) rows.push([a.id, a.closed, a.suspended, a.nameMismatch, a.kycRisk, a.ageDays]);
    const f = join(dir, `${bank}.csv`);
    writeFileAtomic(f, toCsv(rows));
    files.push(f);
  }
  const joined = join(dir, 'joined.csv');
  writeFileAtomic(joined, toCsv(joinedTable(tx, receivers, accounts)));
  files.push(joined);
  return { files, anomalies };
}

const TX_NUMERIC = ['timestamp', 'hour', 'amount', 'amount_usd_log', 'amount_dev', 'night', 'cross_border'];
const BANK_COLUMNS = ['closed', 'suspended', 'name_mismatch', 'kyc_risk', 'age_days'] as const;
const accountValue = (a: Account, c: (typeof BANK_COLUMNS)[number]): number =>
  ({ closed: a.closed, suspended: a.suspended, name_mismatch: a.nameMismatch, kyc_risk: a.kycRisk, age_days: a.ageDays })[c];

/**
 * Every party's columns of every transaction in one table, in transactions.csv's row order (so
 * a recipe's seeded split picks the rows a vertical run held out), bank columns named
 * `<bank>.<column>` as the assembled checkpoint names them. Only for a party allowed to see
 * them all (docs/federated.md, threat model): it is what `eval`, `he-validate` and `export`
 * read for a vertical checkpoint. A bank that lacks the receiving account holds its column
 * mean there: a vertical run feeds zeros for a missing ID after standardizing with the bank's
 * own statistics (mean and std over its whole table, bank.ts releaseColumns), and the mean
 * standardizes to zero.
 */
function joinedTable(tx: (string | number)[][], receivers: Account[], accounts: Account[]): (string | number)[][] {
  const banks = ['bank-a', 'bank-b'] as const;
  const header = tx[0] as string[];
  const txAt = TX_NUMERIC.map((c) => header.indexOf(c));
  const mean = new Map(banks.map((b) => {
    const own = accounts.filter((a) => a.bank === b);
    // 9 digits: more than the float32 the readers parse it to
    return [b, BANK_COLUMNS.map((c) => +(own.reduce((s, a) => s + accountValue(a, c), 0) / own.length).toPrecision(9))];
  }));
  const rows: (string | number)[][] = [[...TX_NUMERIC, ...banks.flatMap((b) => BANK_COLUMNS.map((c) => `${b}.${c}`)), 'is_anomaly']];
  receivers.forEach((receiver, t) => {
    const row = tx[t + 1];
    const bankCells = banks.flatMap((b) => (receiver.bank === b ? BANK_COLUMNS.map((c) => accountValue(receiver, c)) : mean.get(b)!));
    rows.push([...txAt.map((i) => row[i]), ...bankCells, row[header.length - 1]]);
  });
  return rows;
}
