import { expect } from 'chai';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { hepoly } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';

describe('hepoly train --json with a prune: section', function () {
  this.timeout(300000);
  const tmp = tempDir();
  after(() => tmp.cleanup());

  it('top-level figures describe the pruned checkpoint written; the trained network is under before_prune; the report is of the pruned one', () => {
    const out = join(tmp.path, 'pruned');
    const r = hepoly(['train', 'recipes/quickstart.yaml', '--set', 'train.epochs=2', '--set', 'prune={sparsity: 0.5, epochs: 1}', '--out', out, '--json']);
    expect(r.code, r.stderr).to.equal(0);
    const j = r.json as Record<string, any>;
    // quickstart has no test set: the held-out split is validation
    const ev = hepoly(['eval', out, '--json']).json as Record<string, any>;
    expect(ev.split).to.equal('validation');
    expect(j.val_accuracy).to.equal(ev.accuracy);
    expect(j.val_accuracy).to.equal(j.prune.accuracy_finetuned);
    expect(j.before_prune.val_accuracy).to.equal(j.prune.accuracy_before);
    expect(j.test_accuracy).to.equal(null);
    const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8')) as { train_accuracy: number };
    expect(j.train_accuracy).to.equal(summary.train_accuracy);
    // the pruning replaced the checkpoint folder; its report was written again, of the fine-tuning run
    expect(existsSync(join(out, 'report', 'report.html'))).to.equal(true);
    const report = JSON.parse(readFileSync(join(out, 'report', 'report.json'), 'utf8')) as { metrics: unknown[]; held_out: { accuracy: number } };
    expect(report.metrics).to.have.length(1);
    expect(report.held_out.accuracy).to.be.closeTo(ev.accuracy, 1e-9);
  });
});
