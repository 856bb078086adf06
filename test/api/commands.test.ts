import { expect } from 'chai';
import { join } from 'node:path';
import { compile, evaluate, heValidate, HepolyError, loadCheckpoint, plan, prune, summary, train, type MetricsRow } from '../../src/index.js';
import { hepoly } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';

/**
 * The library API in-process against the CLI's --json for the same run: `train`, `evaluate`,
 * `heValidate`, `plan` and `prune` must resolve to the objects the CLI prints. Tiny runs: the
 * quickstart MLP (breast cancer, 455 training samples) with one hidden layer of 8 (depth 3: a
 * 5-prime chain for the encrypted checks) for 2 epochs.
 */

/** figures that legitimately differ between two runs of the same thing: times, memory, compressed sizes */
const TIMING = /_ms($|_)|Ms$|_mb$|^bytes|Bytes$|_per_s$|seconds$|^timings$/;

function withoutTiming(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(withoutTiming);
  if (v === null || typeof v !== 'object') return v;
  return Object.fromEntries(Object.entries(v).filter(([k]) => !TIMING.test(k)).map(([k, x]) => [k, withoutTiming(x)]));
}

describe('library API (src/index.ts) = the CLI --json', function () {
  this.timeout(600000);
  const tmp = tempDir('hepoly-api-');
  after(() => tmp.cleanup());
  const apiOut = join(tmp.path, 'api');
  const cliOut = join(tmp.path, 'cli');
  const recipe = 'recipes/quickstart.yaml';

  it('train: same figures as `hepoly train --json`, onEpoch called once per epoch', async () => {
    const rows: MetricsRow[] = [];
    const r = await train(recipe, { set: { 'train.epochs': 2, 'model.hidden': [8] }, out: apiOut, onEpoch: (row) => rows.push(row) });
    expect(rows.map((x) => x.epoch)).to.deep.equal([1, 2]);
    const cli = hepoly(['train', recipe, '--set', 'train.epochs=2', '--set', 'model.hidden=[8]', '--out', cliOut, '--json']);
    expect(cli.code, cli.stderr).to.equal(0);
    expect(Object.keys(r).sort()).to.deep.equal(Object.keys(cli.json!).sort());
    expect(r.checkpoint).to.equal(apiOut);
    expect(cli.json!.checkpoint).to.equal(cliOut);
    // same seed, same backend: the same run (see test/cli/train-eval.test.ts)
    const { checkpoint: _a, samples_per_s: sa, ...api } = r;
    const { checkpoint: _b, samples_per_s: sb, ...byCli } = cli.json!;
    expect(api).to.deep.equal(byCli);
    expect(sa).to.be.a('number').greaterThan(0);
    expect(sb).to.be.a('number').greaterThan(0);
    expect(r.val_accuracy).to.equal(rows[1].val_accuracy);
    expect(loadCheckpoint(apiOut).state).to.include({ epochs_done: 2, complete: true });
  });

  it('train: a bad override rejects with one HepolyError naming the key', async () => {
    const err = await train(recipe, { set: ['train.epochz=2'], out: join(tmp.path, 'bad') }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(HepolyError);
    expect((err as Error).message).to.contain('epochz');
  });

  it('train: an existing checkpoint is replaced only with overwrite: true', async () => {
    const out = join(tmp.path, 'ow');
    await train(recipe, { set: { 'train.epochs': 1 }, out });
    const refused = await train(recipe, { set: { 'train.epochs': 1 }, out }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(refused).to.be.instanceOf(HepolyError);
    expect((refused as Error).message).to.contain('overwrite');
    const r = await train(recipe, { set: { 'train.epochs': 2 }, out, overwrite: true });
    expect(r.epochs).to.equal(2);
    expect(loadCheckpoint(out).state).to.include({ epochs_done: 2, complete: true });
  });

  it('evaluate: equals `hepoly eval --json`', async () => {
    const r = await evaluate(apiOut);
    const cli = hepoly(['eval', apiOut, '--json']);
    expect(cli.code, cli.stderr).to.equal(0);
    expect(r).to.deep.equal(cli.json);
    expect(r).to.include({ checkpoint: apiOut, split: 'validation', samples: 113 });
    expect(r.accuracy).to.be.closeTo(loadCheckpoint(apiOut).metrics.at(-1)!.val_accuracy, 1e-6);
  });

  it('summary: equals `hepoly summary --json`; compile gives a program of the depth it reports', () => {
    const r = summary(apiOut);
    const cli = hepoly(['summary', apiOut, '--json']);
    expect(cli.code, cli.stderr).to.equal(0);
    expect(r).to.deep.equal(cli.json);
    expect(r.he_ready).to.equal(true);
    expect(compile(apiOut).depth).to.equal(r.he_depth);
    expect(compile(loadCheckpoint(apiOut)).steps.length).to.be.greaterThan(0);
  });

  it('heValidate (SEAL, encrypted): the same keys and figures as `hepoly he-validate --json`', async () => {
    const opts = ['--samples', '4', '--packing', 'sample', '--workers', '1', '--json'];
    const r = await heValidate(apiOut, { samples: 4, packing: 'sample', workers: 1 });
    const cli = hepoly(['he-validate', apiOut, ...opts]);
    expect(cli.code, cli.stderr).to.equal(0);
    expect(Object.keys(r).sort()).to.deep.equal(Object.keys(cli.json!).sort());
    expect(r).to.include({ mode: 'encrypt', samples: 4, packing: 'sample' });
    // CKKS noise differs between two encryptions; every count, parameter and verdict does not
    const exact = (o: Record<string, unknown>) => {
      const { max_abs_error: _m, mean_abs_error: _e, relative_error: _r, agreeing_max_error: _g, ...rest } = withoutTiming(o) as Record<string, unknown>;
      return rest;
    };
    expect(exact(r)).to.deep.equal(exact(cli.json!));
    expect(r.agreement).to.equal(1);
    expect(r.max_abs_error).to.be.lessThan(0.05);
    expect(cli.json!.max_abs_error as number).to.be.lessThan(0.05);
  });

  it('plan: the same ranking as `hepoly he-plan --json`', async () => {
    // Pin the calibration first: a ring calibrated fresh inside the compared call is timed at
    // that moment's load, while the CLI reads every ring from the cache scaled by one speed probe,
    // so two near-tied packings could swap. With every ring cached, both calls scale the same
    // cached timings by one probe each (a common factor per ring ratio) and rank identically.
    await plan(apiOut, { goal: 'latency', top: 3 });
    const r = await plan(apiOut, { goal: 'latency', top: 3 });
    const cli = hepoly(['he-plan', apiOut, '--top', '3', '--json']);
    expect(cli.code, cli.stderr).to.equal(0);
    const cliRows = (cli.json!.rows as { name: string; counts: unknown }[]).map((x) => [x.name, x.counts]);
    expect(r.rows.map((x) => [x.name, x.counts])).to.deep.equal(cliRows);
    expect(r.rows.length).to.be.within(1, 3);
    expect(r.goal).to.equal('latency');
  });

  it('prune: the same summary as `hepoly prune --json`', async () => {
    const r = await prune(apiOut, { sparsity: 0.5, epochs: 1, out: join(tmp.path, 'api-pruned') });
    const cli = hepoly(['prune', apiOut, '--sparsity', '0.5', '--epochs', '1', '--out', join(tmp.path, 'cli-pruned'), '--json']);
    expect(cli.code, cli.stderr).to.equal(0);
    const { checkpoint: _a, ...api } = r;
    const { checkpoint: _b, ...byCli } = cli.json!;
    expect(api).to.deep.equal(byCli);
    expect(r.units).to.be.an('object');
    expect(loadCheckpoint(r.checkpoint).prune).to.not.equal(undefined);
  });
});
