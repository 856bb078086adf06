import { expect } from 'chai';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadRecipe } from '../../src/recipe/load.js';
import { train } from '../../src/train/loop.js';
import { loadCheckpoint } from '../../src/train/checkpoint.js';
import { evaluate } from '../../src/api/evaluate.js';
import { confusionMatrix } from '../../src/report/confusion.js';
import { activationRanges, type ReportData } from '../../src/report/data.js';
import type { Checkpoint } from '../../src/train/checkpoint.js';
import { renameSync } from 'node:fs';
import { hepoly } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';

/** aria-labels vega writes on every mark item ("epoch: 1; loss: 0.5; split: train"), parsed */
function markItems(svg: string, role: string): Record<string, string>[] {
  const items = [...svg.matchAll(/<path aria-label="([^"]*)" role="graphics-symbol" aria-roledescription="([^"]*)"/g)].filter((m) => m[2] === role);
  return items.map((m) => Object.fromEntries(m[1].split('; ').map((kv) => kv.split(': ') as [string, string])));
}

/** width and height from a PNG's IHDR chunk, after checking the signature */
function pngSize(png: Buffer): { width: number; height: number } {
  expect([...png.subarray(0, 8)]).to.deep.equal([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  expect(png.subarray(12, 16).toString('ascii')).to.equal('IHDR');
  return { width: png.readUInt32BE(16), height: png.readUInt32BE(20) };
}

const EPOCHS = 3;

describe('training reports', function () {
  this.timeout(300000);
  const tmp = tempDir();
  after(() => tmp.cleanup());
  const student = join(tmp.path, 'student');
  const teacher = join(tmp.path, 'teacher');
  let report: string;
  let data: ReportData;

  before(async () => {
    // a ReLU teacher, then a quad student distilled from it with range regularization: every figure has data
    const t = loadRecipe('recipes/quickstart.yaml', [`train.epochs=2`, 'model.activation={kind: relu}', 'name=qs-teacher']);
    await train({ recipe: t.recipe, recipeFile: t.file, outDir: teacher });
    const s = loadRecipe('recipes/quickstart.yaml', [`train.epochs=${EPOCHS}`, `distill={teacher: ${teacher}, temperature: 2, alpha: 0.5}`, 'range={bound: 4, weight: 0.01}']);
    await train({ recipe: s.recipe, recipeFile: s.file, outDir: student });
    report = join(student, 'report');
    data = JSON.parse(readFileSync(join(report, 'report.json'), 'utf8')) as ReportData;
  });

  it('train writes the report into the checkpoint, outside its manifest: the checkpoint still verifies', () => {
    for (const f of ['report.html', 'loss.svg', 'loss.png', 'confusion.svg', 'activation-ranges.svg', 'out-of-range.svg', 'layers.svg']) expect(existsSync(join(report, f)), f).to.equal(true);
    const manifest = JSON.parse(readFileSync(join(student, 'model.json'), 'utf8')) as { files: Record<string, unknown> };
    expect(Object.keys(manifest.files).some((f) => f.startsWith('report'))).to.equal(false);
    expect(loadCheckpoint(student).metrics).to.have.length(EPOCHS);
  });

  it('the loss and accuracy figures have one point per epoch for train and for validation, with metrics.csv values', () => {
    const metrics = loadCheckpoint(student).metrics;
    for (const [fig, train, val] of [['loss', 'loss', 'val_loss'], ['accuracy', 'accuracy', 'val_accuracy']] as const) {
      const points = markItems(readFileSync(join(report, `${fig}.svg`), 'utf8'), 'point');
      for (const split of ['train', 'validation']) {
        const mine = points.filter((p) => p.split === split);
        expect(mine.map((p) => Number(p.epoch)), `${fig} ${split}`).to.deep.equal([1, 2, 3]);
        mine.forEach((p, i) => expect(Number(p[fig])).to.be.closeTo(metrics[i][split === 'train' ? train : val], 1e-5));
      }
    }
    expect(markItems(readFileSync(join(report, 'learning-rate.svg'), 'utf8'), 'point')).to.have.length(EPOCHS);
  });

  it('the out-of-range figure has one point per epoch per activation', () => {
    const acts = data.out_of_range_columns.map((c) => c.replace('out_of_range_', ''));
    expect(acts).to.deep.equal(['act1', 'act2']);
    const points = markItems(readFileSync(join(report, 'out-of-range.svg'), 'utf8'), 'point');
    expect(points).to.have.length(EPOCHS * acts.length);
    for (const p of points) expect(Number(p['fraction out of range'])).to.be.within(0, 1);
  });

  it('activation ranges come from ranges.json and sit against the range bound', () => {
    const ranges = JSON.parse(readFileSync(join(student, 'ranges.json'), 'utf8')) as { activations: Record<string, { min: number; max: number }> };
    expect(data.ranges.map((r) => r.name)).to.deep.equal(Object.keys(ranges.activations));
    for (const r of data.ranges) {
      expect(r.min).to.equal(ranges.activations[r.name].min);
      expect(r.reference).to.deep.equal([-4, 4]);
    }
  });

  it('the confusion matrix sums to the held-out split and its accuracy equals `evaluate`', async () => {
    const ev = await evaluate(student);
    const cells = markItems(readFileSync(join(report, 'confusion.svg'), 'utf8'), 'rect mark');
    expect(cells).to.have.length(4);
    expect(cells.reduce((a, c) => a + Number(c.count), 0)).to.equal(ev.samples);
    const diagonal = cells.filter((c) => c.true === c.predicted).reduce((a, c) => a + Number(c.count), 0);
    expect(diagonal / ev.samples).to.be.closeTo(ev.accuracy, 1e-9);
    expect(data.held_out.split).to.equal(ev.split);
  });

  it('confusionMatrix matches a hand-counted case', () => {
    const c = confusionMatrix([0, 1, 1, 2, 2, 2], [0, 2, 1, 2, 0, 2], ['a', 'b', 'c']);
    expect(c.matrix).to.deep.equal([
      [1, 0, 0],
      [0, 1, 1],
      [1, 0, 2],
    ]);
    expect(c.accuracy).to.be.closeTo(4 / 6, 1e-12);
    expect(c.per_class).to.deep.equal([1, 0.5, 2 / 3]);
  });

  it('a distilled student has its teacher accuracy beside it, measured on the same samples', async () => {
    const ev = await evaluate(teacher);
    expect(data.teacher && 'accuracy' in data.teacher ? data.teacher.accuracy : null).to.be.closeTo(ev.accuracy, 1e-9);
    const bars = markItems(readFileSync(join(report, 'per-class-accuracy.svg'), 'utf8'), 'bar');
    expect(bars.map((b) => b.model).sort()).to.deep.equal(['student', 'student', 'teacher', 'teacher']);
    expect(readFileSync(join(report, 'report.html'), 'utf8')).to.include(`teacher`);
  });

  it('the layers figure has each layer with its parameters and HE levels from summary.json', () => {
    const summary = JSON.parse(readFileSync(join(student, 'summary.json'), 'utf8')) as { layers: { name: string; params: number; he_depth: number | null }[] };
    const bars = markItems(readFileSync(join(report, 'layers.svg'), 'utf8'), 'bar');
    const params = bars.filter((b) => 'parameters' in b);
    expect(params.map((b) => Number(b.parameters.replace(/,/g, '')))).to.deep.equal(summary.layers.map((l) => l.params));
    const levels = bars.filter((b) => 'HE levels' in b);
    expect(levels.map((b) => Number(b['HE levels']))).to.deep.equal(summary.layers.map((l) => l.he_depth));
  });

  it('each PNG decodes to the SVG size at 2x, and the HTML holds every figure inline with nothing to fetch', () => {
    const html = readFileSync(join(report, 'report.html'), 'utf8');
    const svgs = data.out_of_range_columns.length ? 8 : 7;
    expect(html.match(/<svg /g)).to.have.length(svgs);
    expect(html).not.to.match(/<script|<link|<img|src=|href="http/);
    for (const fig of ['loss', 'confusion', 'layers']) {
      const svg = readFileSync(join(report, `${fig}.svg`), 'utf8');
      const [, w, h] = svg.match(/^<svg [^>]*width="(\d+)" height="(\d+)"/)!;
      expect(pngSize(readFileSync(join(report, `${fig}.png`)))).to.deep.equal({ width: 2 * Number(w), height: 2 * Number(h) });
    }
  });

  it('`hepoly report CHECKPOINT --out DIR` writes a report; a missing checkpoint is one clear error', () => {
    const out = join(tmp.path, 'elsewhere');
    const r = hepoly(['report', student, '--out', out, '--json']);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.json?.samples).to.equal(data.held_out.samples);
    const cells = (dir: string) => markItems(readFileSync(join(dir, 'confusion.svg'), 'utf8'), 'rect mark');
    expect(cells(out)).to.deep.equal(cells(report));
    const bad = hepoly(['report', join(tmp.path, 'nope')]);
    expect(bad.code).to.equal(1);
    expect(bad.stderr).to.match(/^error: checkpoint not found: .*nope\. Train one with/);
  });

  it('a relu-approx activation is drawn against its fit interval; range.bound wins when training enforced one', () => {
    const stat = { min: -9, max: 7, p001: -5, p999: 5 };
    const ckpt = (range?: { bound: number; weight: number }) =>
      ({
        ranges: { input: stat, activations: { act1: stat, 'attn/denominator': stat } },
        recipe: { range },
        graph: { nodes: [{ name: 'act1', inputs: ['input'], layer: { op: 'activation', activation: { kind: 'relu-approx', degree: 4, range: [-6, 6], trainable: false } } }] },
      }) as unknown as Pick<Checkpoint, 'ranges' | 'recipe' | 'graph'>;
    expect(activationRanges(ckpt()).map((r) => [r.name, r.reference, r.reference_kind])).to.deep.equal([
      ['act1', [-6, 6], 'relu-approx interval'],
      ['attn/denominator', null, null],
    ]);
    expect(activationRanges(ckpt({ bound: 3, weight: 0.1 }))[0].reference).to.deep.equal([-3, 3]);
  });

  it('a student whose teacher has moved still gets its report, which says why the teacher is missing', () => {
    renameSync(teacher, `${teacher}-moved`);
    try {
      const out = join(tmp.path, 'no-teacher');
      const r = hepoly(['report', student, '--out', out, '--json']);
      expect(r.code, r.stderr).to.equal(0);
      expect(r.json?.teacher_accuracy).to.equal(null);
      const d = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as ReportData;
      expect(d.teacher && 'error' in d.teacher ? d.teacher.error : '').to.match(/not found/);
      expect(readFileSync(join(out, 'report.html'), 'utf8')).to.match(/not evaluated: .*not found/);
    } finally {
      renameSync(`${teacher}-moved`, teacher);
    }
  });
});
