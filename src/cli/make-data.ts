import { HepolyError } from '../util/errors.js';
import { makePayments } from '../federated/payments.js';
import { shortPath } from '../recipe/load.js';

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
  const r = makePayments({ rows: a.rows, seed: a.seed, out: a.out });
  console.log(`payments: ${a.rows} transactions (${r.anomalies} anomalies, ${((100 * r.anomalies) / a.rows).toFixed(2)}%) -> ${r.files.map(shortPath).join(', ')}`);
  if (a.json) console.log(JSON.stringify({ files: r.files, rows: a.rows, anomalies: r.anomalies }));
}
