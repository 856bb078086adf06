import { expect } from 'chai';
import { join } from 'node:path';
import { hepoly } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';
import type { PlanResult } from '../../src/he/tiles/plan.js';

/**
 * `hepoly he-plan --measure` through the CLI (runHePlan -> plan() -> the measuring worker,
 * compiled measure-worker.js in a fresh thread): every shown candidate has a prediction and a
 * measurement, and the real pass performed exactly the operations the cost model counted.
 * Nothing here is about time: only that the figures exist and are positive.
 */
describe('hepoly he-plan --measure (CLI): predicted and measured rows for a tiny checkpoint', function () {
  this.timeout(600000);
  const tmp = tempDir('hepoly-he-plan-');
  const ckpt = join(tmp.path, 'tiny');
  after(() => tmp.cleanup());

  before(() => {
    // one hidden layer: depth 3, a small ring (--params auto picks it from the checkpoint)
    const r = hepoly(['train', 'recipes/quickstart.yaml', '--set', 'train.epochs=2', '--set', 'model.hidden=[4]', '--out', ckpt]);
    expect(r.code, r.stderr).to.equal(0);
  });

  it('--measure --top 2 --json: two ranked rows, each predicted and measured (positive), with the measured pass counting what the model counted', () => {
    const r = hepoly(['he-plan', ckpt, '--goal', 'latency', '--measure', '--top', '2', '--json']);
    expect(r.code, r.stderr).to.equal(0);
    const plan = r.json as unknown as PlanResult;
    expect(plan.goal).to.equal('latency');
    expect(plan.params.polyModulusDegree).to.be.at.most(8192);
    expect(plan.rows).to.have.length(2);
    for (const row of plan.rows) {
      expect(row.predicted.latencyMs, row.name).to.be.above(0);
      expect(row.predicted.memoryBytes, row.name).to.be.above(0);
      expect(row.measured, `${row.name} measured`).to.not.equal(null);
      const m = row.measured!;
      expect(m.latencyMs, row.name).to.be.above(0);
      expect(m.memoryBytes, row.name).to.be.above(0);
      expect(m.passes, row.name).to.be.at.least(1);
      expect(m.threadSpeed, row.name).to.be.above(0);
      expect(m.counts, `${row.name}: the measured pass's operations are the cost model's`).to.deep.equal(row.counts);
    }
    // ranked for latency: the first row is predicted no slower than the second
    expect(plan.rows[0].predicted.latencyMs).to.be.at.most(plan.rows[1].predicted.latencyMs);
    expect(r.stdout).to.match(/meas latency/);
    expect(r.stdout).to.include(`choice: ${plan.rows[0].name}`);
  });

  it('without --measure: ranked predictions only; a bad --goal is one error naming the option', () => {
    const r = hepoly(['he-plan', ckpt, '--goal', 'throughput', '--top', '3', '--json']);
    expect(r.code, r.stderr).to.equal(0);
    const plan = r.json as unknown as PlanResult;
    expect(plan.rows.length).to.be.within(1, 3);
    for (const row of plan.rows) expect(row.measured).to.equal(null);
    const amortized = plan.rows.map((x) => x.predicted.amortizedMs);
    expect(amortized).to.deep.equal([...amortized].sort((a, b) => a - b));
    const bad = hepoly(['he-plan', ckpt, '--goal', 'speed']);
    expect(bad.code).to.not.equal(0);
    expect(bad.stderr).to.match(/error: .*--goal/);
  });

  it('--trace: every compiler pass by name, in order, with what it did; the passes after lowering are in the JSON', () => {
    const r = hepoly(['he-plan', ckpt, '--trace', '--top', '1', '--json']);
    expect(r.code, r.stderr).to.equal(0);
    const plan = r.json as unknown as PlanResult;
    expect(plan.passes.map((p) => p.pass)).to.deep.equal(['scales', 'choose-params', 'segment-refresh', 'check-chain', 'stack-interleave']);
    const names = [...r.stdout.matchAll(/^(?:compile )?pass ([a-z-]+): /gm)].map((m) => m[1]);
    // the graph's passes (src/he/compile.ts) lower it first, then the chain's
    expect(names.slice(-5)).to.deep.equal(['scales', 'choose-params', 'segment-refresh', 'check-chain', 'stack-interleave']);
    expect(names.indexOf('lower-affine')).to.be.within(0, names.length - 6);
    // each says what it did: the ring it chose, and the registered packings it costed
    expect(plan.passes[1].note).to.include(`N=${plan.params.polyModulusDegree}`);
    // he-plan asks no client refresh: the program stays one segment
    expect(plan.passes[2].note).to.equal('no client refresh asked: one segment');
    expect(plan.passes[4].note).to.match(/batch \(\d\), sample \(\d\)/);
    const without = hepoly(['he-plan', ckpt, '--top', '1']);
    expect(without.stdout).to.not.match(/^pass /m);
  });
});
