/**
 * What privacy costs in federated training (issue 22): accuracy / AUPRC of federated HE
 * training against centralized training of the same recipe and against plain federated
 * averaging, IID and label-skewed, with and without DP at epsilon 1, 4, 8; bytes and wall
 * time per round; the HE aggregation error against plain sums.
 *
 *   npx tsc -p tsconfig.json && npx tsx bench/federated.ts [--only horizontal|vertical] [--quick] [--fresh]
 *
 * Every federated run is `hepoly federate` (the built CLI): the coordinator and one process
 * per party on loopback. Horizontal: recipes/cancer-fl.yaml (three hospitals, breast cancer).
 * Vertical: recipes/payments-vfl.yaml (network + two banks, datasets/federated/payments).
 * Centralized: `hepoly train` on the same recipe (vertical: on the transactions joined with the
 * receiving account's flags, a table no party holds), scored on the same held-out rows
 * (horizontal: data.path's validation split; vertical: the network's held-out 30%, of which the
 * federated run's test half is reported). Prints markdown tables, then one JSON line.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { measureHeldOut } from '../src/federated/launcher.js';
import { blockSize, GradientEvaluator, GradientKeyHolder } from '../src/federated/vertical/he-gradient.js';
import { readPartyTable, toCsv } from '../src/federated/party-data.js';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const OUT = join(ROOT, 'bench-out', 'federated');
const BIN = join(ROOT, 'bin', 'hepoly.js');
const args = process.argv.slice(2);
const only = args.includes('--only') ? args[args.indexOf('--only') + 1] : null;
const quick = args.includes('--quick');

interface Row {
  setting: string;
  split: string;
  dp: string;
  accuracy: number | null;
  auprc: number | null;
  epsilon: number | null;
  mbPerRound: number | null;
  mbPerParty: string;
  secondsPerRound: number | null;
}

function cli(argv: string[], env: Record<string, string> = {}): Record<string, unknown> {
  const r = spawnSync(process.execPath, [BIN, ...argv], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, ...env }, maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`hepoly ${argv.join(' ')} failed:\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, unknown>;
}

/**
 * One federated run, cached in bench-out/federated/results/NAME.json (--fresh ignores the
 * cache) and retried once: in a working tree shared with others, a concurrent rebuild of dist/
 * can break a child process mid-run.
 */
function federate(recipe: string, name: string, set: string[], env: Record<string, string> = {}): Record<string, unknown> {
  const cached = join(OUT, 'results', `${name}.json`);
  if (!args.includes('--fresh') && existsSync(cached)) return JSON.parse(readFileSync(cached, 'utf8')) as Record<string, unknown>;
  const out = join(OUT, name);
  for (let attempt = 1; ; attempt++) {
    rmSync(out, { recursive: true, force: true });
    if (env.HEPOLY_FED_DUMP_DIR) rmSync(env.HEPOLY_FED_DUMP_DIR, { recursive: true, force: true });
    process.stderr.write(`federate ${name} ...\n`);
    try {
      const j = cli(['federate', recipe, '--out', out, '--json', ...set.flatMap((s) => ['--set', s])], env);
      mkdirSync(join(OUT, 'results'), { recursive: true });
      writeFileSync(cached, JSON.stringify(j));
      return j;
    } catch (e) {
      if (attempt >= 2) throw e;
      process.stderr.write(`${(e as Error).message.slice(0, 400)}\nretrying ${name}\n`);
    }
  }
}

function row(setting: string, split: string, dp: string, j: Record<string, unknown>, accuracyKey = 'test_accuracy'): Row {
  const per = j.bytes_per_party_per_round as Record<string, number> | undefined;
  return {
    setting,
    split,
    dp,
    accuracy: j[accuracyKey] as number,
    auprc: (j.auprc as number) ?? null,
    epsilon: (j.epsilon as number) ?? null,
    mbPerRound: j.bytes_per_round !== undefined ? (j.bytes_per_round as number) / 1e6 : null,
    mbPerParty: per ? Object.entries(per).map(([p, b]) => `${p} ${(b / 1e6).toFixed(2)}`).join(', ') : '',
    secondsPerRound: (j.seconds_per_round as number) ?? null,
  };
}

async function centralized(recipe: string, name: string, set: string[]): Promise<Row> {
  const out = join(OUT, name);
  rmSync(out, { recursive: true, force: true });
  process.stderr.write(`train ${name} ...\n`);
  cli(['train', recipe, '--out', out, '--json', ...set.flatMap((s) => ['--set', s])]);
  const h = await measureHeldOut(out);
  return { setting: 'centralized (hepoly train)', split: 'all rows', dp: 'none', accuracy: h.accuracy, auprc: h.auprc, epsilon: null, mbPerRound: null, mbPerParty: '', secondsPerRound: null };
}

/** Max |decrypted HE sum - plain sum of the same contributions| over every round and party. */
function heAggregationError(dump: string): number {
  const read = (f: string) => {
    const b = readFileSync(join(dump, f));
    return new Float64Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
  };
  let max = 0;
  const files = readdirSync(dump);
  for (const sumFile of files.filter((f) => f.includes('-sum-round-'))) {
    const round = sumFile.split('-round-')[1];
    const parts = files.filter((f) => !f.includes('-sum-') && f.endsWith(`-round-${round}`)).map(read);
    const sum = read(sumFile);
    for (let i = 0; i < sum.length; i++) max = Math.max(max, Math.abs(sum[i] - parts.reduce((a, p) => a + p[i], 0)));
  }
  return max;
}

async function horizontal(): Promise<{ rows: Row[]; heError: number }> {
  const recipe = 'recipes/cancer-fl.yaml';
  const rounds = quick ? 4 : 10;
  const base = [`federated.rounds=${rounds}`, 'federated.split.scheme=iid'];
  const rows: Row[] = [await centralized(recipe, 'cancer-central', [`train.epochs=${rounds}`])];
  const dump = join(OUT, 'cancer-he-dump');
  rows.push(row('plain FedAvg', 'IID', 'none', federate(recipe, 'cancer-plain-iid', [...base, 'federated.aggregation=plain', 'federated.secure_aggregation=false'])));
  rows.push(row('HE + masks FedAvg', 'IID', 'none', federate(recipe, 'cancer-he-iid', base, { HEPOLY_FED_DUMP_DIR: dump })));
  const skew = [`federated.rounds=${rounds}`, 'federated.split.scheme=label-skew', 'federated.split.skew=0.9'];
  rows.push(row('plain FedAvg', 'label-skew 0.9', 'none', federate(recipe, 'cancer-plain-skew', [...skew, 'federated.aggregation=plain', 'federated.secure_aggregation=false'])));
  rows.push(row('HE + masks FedAvg', 'label-skew 0.9', 'none', federate(recipe, 'cancer-he-skew', skew)));
  // DP-SGD rounds: one noised step each, so more of them, on a quarter of the records per round
  const dpRounds = quick ? 10 : 40;
  for (const eps of quick ? [8] : [1, 4, 8]) {
    for (const [split, scheme] of [['IID', 'iid'], ['label-skew 0.9', 'label-skew']] as const) {
      if (quick && scheme !== 'iid') continue;
      const set = [`federated.rounds=${dpRounds}`, `federated.split.scheme=${scheme}`, 'federated.split.skew=0.9', `federated.dp={epsilon: ${eps}, delta: 1.0e-5, clip: 1.0, sample_rate: 0.25}`, 'train.optimizer.lr=0.01'];
      rows.push(row('HE + masks, distributed DP-SGD', split, `eps ${eps}`, federate(recipe, `cancer-dp${eps}-${scheme}`, set)));
      // the same DP-SGD without encryption or masks: what HE costs under DP
      rows.push(row('plain distributed DP-SGD', split, `eps ${eps}`, federate(recipe, `cancer-plain-dp${eps}-${scheme}`, [...set, 'federated.aggregation=plain', 'federated.secure_aggregation=false'])));
    }
  }
  return { rows, heError: heAggregationError(dump) };
}

/** The transactions joined with the receiving account's flags: the centralized view no party has. */
function joinedPayments(): string {
  const dir = join(ROOT, 'datasets/federated/payments');
  const tx = readPartyTable(join(dir, 'transactions.csv'), 'data.path', 'bench');
  const accounts = new Map<string, string[]>();
  let accountCols: string[] = [];
  for (const b of ['bank-a', 'bank-b']) {
    const t = readPartyTable(join(dir, `${b}.csv`), 'data.path', 'bench');
    accountCols = t.columns.slice(1);
    for (const r of t.rows) accounts.set(r[0], r.slice(1));
  }
  const recv = tx.columns.indexOf('receiver_account');
  const feats = ['amount_usd_log', 'amount_dev', 'night', 'cross_border', 'is_anomaly'].map((c) => tx.columns.indexOf(c));
  const rows = tx.rows.map((r) => [...feats.slice(0, 4).map((i) => r[i]), ...accounts.get(r[recv])!, r[feats[4]]]);
  mkdirSync(OUT, { recursive: true });
  const file = join(OUT, 'payments-joined.csv');
  writeFileSync(file, toCsv([['amount_usd_log', 'amount_dev', 'night', 'cross_border', ...accountCols, 'is_anomaly'], ...rows]));
  return file;
}

async function vertical(): Promise<{ rows: Row[]; heError: number }> {
  const recipe = 'recipes/payments-vfl.yaml';
  const rounds = quick ? 2 : 6;
  const joined = joinedPayments();
  const c = await centralized(recipe, 'payments-central', [`data.path=${joined}`, `train.epochs=${rounds}`]);
  c.split = 'joined table (val + test rows)';
  const n = await centralized(recipe, 'payments-network-only', [`train.epochs=${rounds}`, 'data.features=[amount_usd_log, amount_dev, night, cross_border]']);
  n.setting = 'network only (hepoly train, no bank columns)';
  n.split = 'transactions (val + test rows)';
  const rows: Row[] = [c, n];
  const base = [`federated.rounds=${rounds}`];
  rows.push(row('plain split learning', 'vertical', 'none', federate(recipe, 'payments-plain', [...base, 'federated.aggregation=plain', 'federated.secure_aggregation=false'])));
  rows.push(row('HE gradients + masked outputs', 'vertical', 'none', federate(recipe, 'payments-he', base)));
  for (const eps of quick ? [8] : [1, 4, 8]) rows.push(row('HE + masks + DP', 'vertical', `eps ${eps}`, federate(recipe, `payments-dp${eps}`, [...base, `federated.dp={epsilon: ${eps}, delta: 1.0e-5, clip: 1.0}`])));
  // HE error of one backward step at the recipe's shape (batch 256, 5 bank columns, 8 hidden)
  const holder = await GradientKeyHolder.create([blockSize(5, 8)]);
  const bank = await GradientEvaluator.create(holder.publicKey, holder.galoisKeys);
  const B = 256;
  const dz = Float64Array.from({ length: B * 8 }, (_, i) => Math.sin(i));
  const x = Float64Array.from({ length: B * 5 }, (_, i) => Math.cos(3 * i));
  const { ciphertext, mask } = bank.maskedProduct(holder.encryptCutGradient(dz, B, 8, 5), x, B, 5, 8);
  const got = holder.decryptMasked(ciphertext, 40);
  let heError = 0;
  for (let a = 0; a < 5; a++) for (let j = 0; j < 8; j++) {
    let ref = 0;
    for (let r = 0; r < B; r++) ref += x[r * 5 + a] * dz[r * 8 + j];
    heError = Math.max(heError, Math.abs(got[a * 8 + j] - mask[a * 8 + j] - ref));
  }
  return { rows, heError };
}

function table(title: string, rows: Row[], metric: string): string {
  const f = (v: number | null, d: number) => (v === null || v === undefined || Number.isNaN(v) ? '-' : v.toFixed(d));
  return [
    `### ${title}`,
    '',
    `| setting | split | DP | ${metric} | AUPRC | epsilon spent | MB per round | MB per round per party | s per round |`,
    '|---|---|---|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.setting} | ${r.split} | ${r.dp} | ${f(r.accuracy, 4)} | ${f(r.auprc, 4)} | ${f(r.epsilon, 3)} | ${f(r.mbPerRound, 2)} | ${r.mbPerParty || '-'} | ${f(r.secondsPerRound, 2)} |`),
    '',
  ].join('\n');
}

const result: Record<string, unknown> = { date: new Date().toISOString(), cpus: cpus().length, cpu: cpus()[0]?.model };
mkdirSync(OUT, { recursive: true });
if (only !== 'vertical') {
  const h = await horizontal();
  console.log(table('Horizontal: breast cancer, three hospitals (test accuracy on data.path\'s held-out split)', h.rows, 'test accuracy'));
  console.log(`HE aggregation error vs plain sums (max abs, every round and party): ${h.heError.toExponential(2)}\n`);
  result.horizontal = h;
}
if (only !== 'horizontal') {
  const v = await vertical();
  console.log(table('Vertical: payments, network + two banks (test accuracy and AUPRC on the network\'s held-out rows)', v.rows, 'test accuracy'));
  console.log(`HE backward-pass error vs plain X^T dZ (max abs, batch 256): ${v.heError.toExponential(2)}\n`);
  result.vertical = v;
}
console.log(JSON.stringify(result));
