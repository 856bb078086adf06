import { expect } from 'chai';
import { Writable } from 'node:stream';
import { join } from 'node:path';
import { etaMs, fmtDuration, showProgress } from '../../src/cli/progress.js';
import { reportProgress, setProgressSink } from '../../src/util/progress-event.js';
import { writeFileSync } from 'node:fs';
import { hepoly } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';
import { loadRecipe } from '../../src/recipe/load.js';
import { train } from '../../src/train/loop.js';
import { validate } from '../../src/he/validate.js';
import type { ProgressEvent } from '../../src/util/progress-event.js';

/** the events a run reports, collected through the process-wide sink */
async function eventsOf(run: () => Promise<unknown>): Promise<ProgressEvent[]> {
  const seen: ProgressEvent[] = [];
  const previous = setProgressSink((e) => seen.push(e));
  try {
    await run();
  } finally {
    setProgressSink(previous);
  }
  return seen;
}

/** the last event of each stage, in the order the stages began */
function lastPerStage(events: ProgressEvent[]): ProgressEvent[] {
  const last = new Map<string, ProgressEvent>();
  for (const e of events) last.set(e.stage, e);
  return [...last.values()];
}

/** a stream that keeps what is written; `tty` makes cli-progress draw its bar into it */
function captured(tty: boolean): { stream: Writable & { isTTY?: boolean; columns?: number }; text: () => string } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      chunks.push(String(chunk));
      done();
    },
  }) as Writable & { isTTY?: boolean; columns?: number; cursorTo?: unknown; clearLine?: unknown; moveCursor?: unknown };
  if (tty) {
    stream.isTTY = true;
    stream.columns = 200;
  }
  return { stream, text: () => chunks.join('') };
}

describe('progress of long encrypted runs (src/cli/progress.ts)', function () {
  this.timeout(300000);

  it('ETA is the stage rate so far times what is left; durations read as 12s, 1m05s, 2h03m', () => {
    expect(etaMs(10000, 2, 10)).to.equal(40000);
    expect(etaMs(5000, 0, 10)).to.equal(null);
    expect([fmtDuration(12000), fmtDuration(65000), fmtDuration(7380000)]).to.deep.equal(['12s', '1m05s', '2h03m']);
  });

  it('in logs: one line at most every interval, with stage, counts, elapsed and ETA; stop restores the previous sink', () => {
    let t = 0;
    const out = captured(false);
    const seen: string[] = [];
    setProgressSink((e) => seen.push(e.stage));
    const d = showProgress({ tty: false, stream: out.stream, task: 'he-validate', intervalMs: 10000, now: () => t });
    t = 1000;
    reportProgress({ stage: 'encrypt', done: 0, total: 10, unit: 'passes' });
    t = 3000;
    reportProgress({ stage: 'encrypt', done: 1, total: 10, unit: 'passes' });
    t = 11000;
    reportProgress({ stage: 'encrypt', done: 2, total: 10, unit: 'passes' });
    t = 15000;
    reportProgress({ stage: 'encrypt', done: 3, total: 10, unit: 'passes' });
    t = 31000;
    reportProgress({ stage: 'evaluate segment 1/2', done: 0, total: 4, unit: 'passes' });
    t = 41000;
    reportProgress({ stage: 'evaluate segment 1/2', done: 1, total: 4, unit: 'passes', detail: '0 client refreshes' });
    d.stop();
    expect(out.text().trim().split('\n')).to.deep.equal([
      // stage began at 1 s: 2 of 10 in 10 s, 8 left
      'he-validate: encrypt 2/10 passes, elapsed 11s, ETA 40s',
      'he-validate: evaluate segment 1/2 0/4 passes, elapsed 31s',
      'he-validate: evaluate segment 1/2 1/4 passes (0 client refreshes), elapsed 41s, ETA 30s',
    ]);
    reportProgress({ stage: 'after', done: 1, total: 1, unit: 'x' });
    expect(seen).to.deep.equal(['after']);
    setProgressSink(null);
  });

  it('on a terminal: a bar with the stage, counts and ETA', () => {
    let t = 0;
    const out = captured(true);
    const d = showProgress({ tty: true, stream: out.stream, task: 'he-validate', now: () => t });
    reportProgress({ stage: 'evaluate', done: 0, total: 6, unit: 'passes' });
    t = 6000;
    reportProgress({ stage: 'evaluate', done: 3, total: 6, unit: 'passes' });
    d.stop();
    expect(out.text()).to.match(/evaluate \[[^\]]*\] 3\/6 passes {2}elapsed 6s {2}ETA 6s/);
  });

  it('hepoly he-validate (SEAL) reports encryption and evaluation of every pass in logs', () => {
    const tmp = tempDir();
    try {
      const ckpt = join(tmp.path, 'tiny');
      const t = hepoly(['train', 'recipes/quickstart.yaml', '--set', 'train.epochs=1', '--set', 'model.hidden=[4]', '--out', ckpt]);
      expect(t.code, t.stderr).to.equal(0);
      const r = hepoly(['he-validate', ckpt, '--samples', '3', '--packing', 'sample', '--workers', '1'], { env: { HEPOLY_PROGRESS_SECONDS: '0' } });
      expect(r.code, r.stderr).to.equal(0);
      const lines = r.stdout.split('\n').filter((l) => l.startsWith('he-validate: '));
      for (const k of [1, 2, 3]) {
        expect(lines.some((l) => l.startsWith(`he-validate: encrypt ${k}/3 passes, elapsed `)), `encrypt ${k}/3 in\n${lines.join('\n')}`).to.equal(true);
        expect(lines.some((l) => l.startsWith(`he-validate: evaluate ${k}/3 passes, elapsed `)), `evaluate ${k}/3`).to.equal(true);
      }
      expect(lines.find((l) => l.startsWith('he-validate: evaluate 1/3'))).to.match(/ETA \d+/);
      expect(r.stdout).to.match(/accuracy: plaintext .* encrypted /);
    } finally {
      tmp.cleanup();
    }
  });

  it('--refresh client (a deep ResNet, simulated): every segment and every client refresh round is reported to its end', async () => {
    const tmp = tempDir();
    try {
      const recipe = join(tmp.path, 'tiny-resnet.yaml');
      writeFileSync(
        recipe,
        [
          'name: tiny-resnet',
          `extends: ${join(process.cwd(), 'recipes/fmnist-base.yaml')}`,
          'model: {kind: resnet, depth: 8, widths: [2, 2, 4], skip: standard, pad_to: 32, activation: {kind: quad}}',
          'data: {limit: 64, test_limit: 8, split: {validation: 0.01}}',
          'train: {epochs: 1, batch: 32}',
        ].join('\n'),
      );
      const ckpt = join(tmp.path, 'ckpt');
      await train({ recipe: loadRecipe(recipe, []).recipe, recipeFile: recipe, outDir: ckpt, callbacks: {} });
      // a chain of 5 levels for depth 15: two client refreshes per sample, three segments
      const params = join(tmp.path, 'params.json');
      writeFileSync(params, JSON.stringify({ poly_modulus_degree: 8192, coeff_modulus_bits: [40, 27, 27, 27, 27, 27, 40], scale_bits: 27 }));
      const events = await eventsOf(() => validate({ checkpoint: ckpt, samples: 3, params, workers: 2, mode: 'simulate', refresh: 'client' }));
      expect(lastPerStage(events).map((e) => `${e.stage} ${e.done}/${e.total}`)).to.deep.equal([
        'encrypt 3/3',
        'evaluate segment 1/3 3/3',
        'client refresh 1/2 3/3',
        'evaluate segment 2/3 3/3',
        'client refresh 2/2 3/3',
        'evaluate segment 3/3 3/3',
      ]);
    } finally {
      tmp.cleanup();
    }
  });

  it('a transformer under --refresh client reports each layer evaluated and the client refreshes so far', async () => {
    const tmp = tempDir();
    try {
      const text = join(tmp.path, 'tiny.txt');
      writeFileSync(text, 'the cat sat on the mat. the dog sat on the log.\n'.repeat(40));
      const recipe = join(tmp.path, 'lm.yaml');
      writeFileSync(
        recipe,
        `name: tiny-lm
data: {source: text, path: ${JSON.stringify(text)}, context: 4, split: {validation: 0.1, test: 0.1}}
model: {kind: transformer, task: lm, layers: 1, dim: 8, heads: 2, mlp_ratio: 1, attention: {kind: power-softmax, p: 2}, norm: batchnorm}
train: {epochs: 1, batch: 64, optimizer: {kind: adam, lr: 0.01}}
`,
      );
      const out = join(tmp.path, 'ckpt');
      await train({ recipe: loadRecipe(recipe, []).recipe, recipeFile: recipe, outDir: out, callbacks: {} });
      // a fixed N=8192 chain (--params auto could pick an uncut N=32768, slow to simulate)
      const params = join(tmp.path, 'refresh-params.json');
      writeFileSync(params, JSON.stringify({ poly_modulus_degree: 8192, coeff_modulus_bits: [44, 30, 30, 30, 30, 44], scale_bits: 30 }));
      let report: Awaited<ReturnType<typeof validate>> | null = null;
      const events = await eventsOf(async () => {
        report = await validate({ checkpoint: out, samples: 2, params, mode: 'simulate', refresh: 'client' });
      });
      const layers = events.filter((e) => e.stage === 'evaluate (batch evaluator)');
      expect(layers.map((e) => e.done)).to.deep.equal(layers.map((_, i) => i + 1));
      expect(layers.at(-1)!.done).to.equal(layers[0].total);
      const refreshes = layers.map((e) => Number(/^(\d+) client refreshes$/.exec(e.detail ?? '')![1]));
      // counts only grow, and end at the report's number
      refreshes.forEach((n, i) => expect(n).to.be.at.least(i ? refreshes[i - 1] : 0));
      expect(refreshes.at(-1)).to.equal(report!.refreshes!.perPass);
      expect(report!.refreshes!.perPass).to.be.above(0);
    } finally {
      tmp.cleanup();
    }
  });
});
