import { readdirSync } from 'node:fs';
import { HepolyError } from '../util/errors.js';
import { claimOutputDir } from '../util/output-guard.js';
import { shortPath } from '../util/paths.js';
import { defineCommand } from './command.js';

/** `hepoly make-data payments --rows N --seed S --out DIR`: synthetic data sets for the federated recipes. */
export interface MakeDataArgs {
  kind: string;
  rows: number;
  seed: number;
  out: string;
  json?: boolean;
}

export async function runMakeData(a: MakeDataArgs): Promise<void> {
  if (a.kind !== 'payments') throw new HepolyError(`make-data: unknown data set ${JSON.stringify(a.kind)}. Available: payments`, { exitCode: 2 });
  const claim = claimOutputDir(a.out, { flag: '--out', kind: 'payments data set', describeOurs: describePayments, replace: true, replaceHint: '' });
  const { makePayments } = await import('../federated/payments.js');
  let r: ReturnType<typeof makePayments>;
  try {
    r = makePayments({ rows: a.rows, seed: a.seed, out: claim.dir });
  } finally {
    claim.release();
  }
  console.log(`payments: ${a.rows} transactions (${r.anomalies} anomalies, ${((100 * r.anomalies) / a.rows).toFixed(2)}%) -> ${r.files.map(shortPath).join(', ')}`);
  if (a.json) console.log(JSON.stringify({ files: r.files, rows: a.rows, anomalies: r.anomalies }));
}

/** The files makePayments writes (test/api/output-guard.test.ts checks they match). */
export const PAYMENTS_FILES = ['bank-a.csv', 'bank-b.csv', 'joined.csv', 'transactions.csv'];

/** A folder of nothing but an earlier `make-data payments` output is replaced; any other folder is refused. */
function describePayments(dir: string): string | null {
  const entries = readdirSync(dir);
  return entries.length > 0 && entries.every((e) => PAYMENTS_FILES.includes(e)) ? 'a hepoly payments data set' : null;
}

export const makeDataCommand = defineCommand(
  'make-data <kind>',
  'write a synthetic data set: payments (a payment network\'s transactions and two banks\' account tables, for recipes/payments-vfl.yaml)',
  (y) =>
    y
      .positional('kind', { type: 'string', demandOption: true, describe: 'payments' })
      .option('rows', { type: 'number', default: 5000, describe: 'transactions' })
      .option('seed', { type: 'number', default: 42 })
      .option('out', { type: 'string', default: 'datasets/federated/payments', describe: 'folder for transactions.csv, bank-a.csv, bank-b.csv, joined.csv' })
      .option('json', { type: 'boolean', default: false }),
  (a) => runMakeData({ kind: a.kind, rows: a.rows, seed: a.seed, out: a.out, json: a.json }),
);
