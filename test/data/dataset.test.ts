import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';
import {
  applyNormalize,
  dataPathCandidates,
  loadData,
  packageRoot,
  stratifiedSplit,
  sortLabels,
  type LoadedData,
  type Split,
} from '../../src/data/index.js';
import { DataSchema, type DataConfig } from '../../src/recipe/schema.js';
import { HepolyError } from '../../src/util/errors.js';

const RECIPE = 'recipes/test-recipe.yaml';
const data = (raw: unknown): DataConfig => DataSchema.parse(raw);
const iris = (extra: Record<string, unknown> = {}) =>
  data({ source: 'csv', path: 'datasets/iris.csv', label: 'species', ...extra });
const cancer = (extra: Record<string, unknown> = {}) =>
  data({ source: 'csv', path: 'datasets/breast-cancer-wisconsin.csv', label: 'diagnosis', ...extra });

async function expectError(fn: () => unknown, parts: string[]): Promise<string> {
  let caught: unknown;
  try {
    await fn();
  } catch (e) {
    caught = e;
  }
  expect(caught, 'expected a HepolyError').to.be.instanceOf(HepolyError);
  const msg = (caught as Error).message;
  for (const p of parts) expect(msg, msg).to.include(p);
  return msg;
}

function classCounts(s: Split, k: number): number[] {
  const c = new Array(k).fill(0);
  for (const v of s.y) c[v]++;
  return c;
}

function columnStats(x: Float32Array, F: number): { mean: number[]; std: number[] } {
  const n = x.length / F;
  const mean = new Array(F).fill(0);
  const std = new Array(F).fill(0);
  for (let r = 0; r < n; r++) for (let j = 0; j < F; j++) mean[j] += x[r * F + j] / n;
  for (let r = 0; r < n; r++) for (let j = 0; j < F; j++) std[j] += (x[r * F + j] - mean[j]) ** 2 / n;
  return { mean, std: std.map(Math.sqrt) };
}

/** Identifies rows by content, to compare splits across loads. */
function rowKeys(s: Split, F: number): string[] {
  const out: string[] = [];
  for (let r = 0; r < s.count; r++) out.push(Array.from(s.x.subarray(r * F, (r + 1) * F)).join(','));
  return out;
}

describe('data/dataset', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'hepoly-data-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  function fixture(name: string, contents: string | Uint8Array): string {
    const p = join(dir, name);
    writeFileSync(p, contents);
    return p;
  }

  describe('csv', () => {
    it('loads iris with a stratified split, sorted labels and metadata', async () => {
      const d = await loadData(iris(), { seed: 1, recipeFile: RECIPE });
      expect(d.preprocess.labels).to.deep.equal(['setosa', 'versicolor', 'virginica']);
      expect(d.preprocess.inputShape).to.deep.equal([4]);
      expect(d.preprocess.features).to.deep.equal(['sepal_length', 'sepal_width', 'petal_length', 'petal_width']);
      expect(d.test).to.equal(null);
      expect(d.sources).to.deep.equal([resolve('datasets/iris.csv')]);
      expect(classCounts(d.validation, 3)).to.deep.equal([10, 10, 10]);
      expect(classCounts(d.train, 3)).to.deep.equal([40, 40, 40]);
      expect(d.train.x.length).to.equal(120 * 4);
      expect(d.train.y.length).to.equal(120);
    });

    it('splits breast cancer per class in the validation proportion', async () => {
      const d = await loadData(cancer({ split: { validation: 0.25 } }), { seed: 7 });
      expect(d.preprocess.labels).to.deep.equal(['benign', 'malignant']);
      expect(d.preprocess.inputShape).to.deep.equal([30]);
      expect(classCounts(d.validation, 2)).to.deep.equal([Math.round(0.25 * 357), Math.round(0.25 * 212)]);
      expect(d.train.count + d.validation.count).to.equal(569);
    });

    it('gives the same split for the same seed and a different one for another seed', async () => {
      const a = await loadData(cancer({ normalize: 'none' }), { seed: 3 });
      const b = await loadData(cancer({ normalize: 'none' }), { seed: 3 });
      const c = await loadData(cancer({ normalize: 'none' }), { seed: 4 });
      expect(Buffer.from(a.train.x.buffer).equals(Buffer.from(b.train.x.buffer))).to.equal(true);
      expect(Array.from(a.validation.y)).to.deep.equal(Array.from(b.validation.y));
      const va = new Set(rowKeys(a.validation, 30));
      const vc = rowKeys(c.validation, 30);
      expect(vc.filter((k) => va.has(k)).length).to.be.lessThan(vc.length);
      // train and validation are disjoint and cover the file
      const ta = rowKeys(a.train, 30);
      expect(ta.filter((k) => va.has(k))).to.have.length(0);
      expect(new Set([...ta, ...va]).size).to.equal(569);
    });

    it('standardizes with train-split stats only', async () => {
      const d = await loadData(cancer(), { seed: 5 });
      const st = columnStats(d.train.x, 30);
      for (let j = 0; j < 30; j++) {
        expect(st.mean[j]).to.be.closeTo(0, 1e-4);
        expect(st.std[j]).to.be.closeTo(1, 1e-3);
      }
      const sv = columnStats(d.validation.x, 30);
      expect(sv.mean.some((m) => Math.abs(m) > 1e-3)).to.equal(true);
      // the stats are those of the raw train rows
      const raw = await loadData(cancer({ normalize: 'none' }), { seed: 5 });
      const rs = columnStats(raw.train.x, 30);
      const norm = d.preprocess.normalize;
      expect(norm.kind).to.equal('standard');
      if (norm.kind !== 'standard') return;
      for (let j = 0; j < 30; j++) {
        expect(norm.mean[j]).to.be.closeTo(rs.mean[j], 1e-3 * Math.max(1, Math.abs(rs.mean[j])));
        expect(norm.std[j]).to.be.closeTo(rs.std[j], 1e-3 * Math.max(1, rs.std[j]));
      }
    });

    it('minmax maps the train split into [0, 1]; a constant column does not divide by zero', async () => {
      const d = await loadData(iris({ normalize: 'minmax' }), { seed: 2 });
      expect(Math.min(...d.train.x)).to.be.closeTo(0, 1e-6);
      expect(Math.max(...d.train.x)).to.be.closeTo(1, 1e-6);
      const p = fixture('const.csv', 'a,b,y\n5,1,x\n5,2,y\n5,3,x\n5,4,y\n');
      const c = await loadData(data({ source: 'csv', path: p, label: 'y', normalize: 'minmax', split: { validation: 0 } }), { seed: 1 });
      expect(Array.from(c.train.x).every(Number.isFinite)).to.equal(true);
      const s = await loadData(data({ source: 'csv', path: p, label: 'y', split: { validation: 0 } }), { seed: 1 });
      if (s.preprocess.normalize.kind !== 'standard') throw new Error('expected standard');
      expect(s.preprocess.normalize.std[0]).to.equal(1);
      expect(Array.from(s.train.x).filter((_, k) => k % 2 === 0)).to.deep.equal([0, 0, 0, 0]);
    });

    it('reuses a saved preprocess exactly: identical arrays and label mapping', async () => {
      const a = await loadData(iris({ limit: 50 }), { seed: 11 });
      const saved = JSON.parse(JSON.stringify(a.preprocess));
      const b = await loadData(iris({ limit: 50 }), { seed: 11, preprocess: saved });
      expect(Array.from(b.train.x)).to.deep.equal(Array.from(a.train.x));
      expect(Array.from(b.validation.x)).to.deep.equal(Array.from(a.validation.x));
      expect(Array.from(b.validation.y)).to.deep.equal(Array.from(a.validation.y));
      expect(b.preprocess).to.deep.equal(a.preprocess);
    });

    it('errors when the data holds a label the saved mapping lacks', async () => {
      const a = await loadData(iris(), { seed: 1 });
      const saved = { ...a.preprocess, labels: ['setosa', 'versicolor'] };
      await expectError(() => loadData(iris(), { seed: 1, preprocess: saved }), ['iris.csv', '"virginica"', 'not one of the classes', '"setosa", "versicolor"', 'retrain']);
      const other = { ...a.preprocess, features: ['sepal_length', 'sepal_width'], inputShape: [2] };
      await expectError(() => loadData(iris(), { seed: 1, preprocess: other }), ['iris.csv', 'feature columns differ', 'data.features']);
    });

    it('maps numeric labels in numeric order', async () => {
      const p = fixture('num.csv', 'a,y\n1,10\n2,2\n3,1\n4,10\n5,2\n6,1\n');
      const d = await loadData(data({ source: 'csv', path: p, label: 'y', split: { validation: 0 } }), { seed: 1 });
      expect(d.preprocess.labels).to.deep.equal(['1', '2', '10']);
      expect(sortLabels(['b', 'B', 'a10', 'a9'])).to.deep.equal(['B', 'a10', 'a9', 'b']);
    });

    it('keeps a class with a single sample in train', async () => {
      const p = fixture('single.csv', 'a,y\n1,x\n2,x\n3,x\n4,x\n5,lonely\n');
      const d = await loadData(data({ source: 'csv', path: p, label: 'y', split: { validation: 0.5 } }), { seed: 9 });
      expect(d.preprocess.labels).to.deep.equal(['lonely', 'x']);
      expect(classCounts(d.train, 2)).to.deep.equal([1, 2]);
      expect(classCounts(d.validation, 2)).to.deep.equal([0, 2]);
    });

    it('limit caps the train split with a class-balanced prefix', async () => {
      const d = await loadData(cancer({ limit: 100 }), { seed: 21 });
      expect(d.train.count).to.equal(100);
      expect(d.train.x.length).to.equal(100 * 30);
      const [b, m] = classCounts(d.train, 2);
      const expected = (100 * 286) / 455; // benign share of the train split
      expect(Math.abs(b - expected)).to.be.at.most(1.5);
      expect(b + m).to.equal(100);
      expect(d.validation.count).to.equal(71 + 42);
    });

    it('reshapes features with data.shape and checks the product', async () => {
      const d = await loadData(iris({ shape: [2, 2] }), { seed: 1 });
      expect(d.preprocess.inputShape).to.deep.equal([2, 2, 1]);
      const e = await loadData(iris({ shape: [1, 2, 2] }), { seed: 1 });
      expect(e.preprocess.inputShape).to.deep.equal([1, 2, 2]);
      await expectError(() => loadData(iris({ shape: [3, 3, 1] }), { seed: 1, recipeFile: RECIPE }), [RECIPE, 'data.shape', '4 feature values', 'iris.csv', 'found [3, 3, 1] (product 9)', 'Set data.shape']);
    });

    it('errors on a missing file, listing the places tried', async () => {
      const msg = await expectError(
        () => loadData(data({ source: 'csv', path: 'datasets/irs.csv', label: 'species' }), { seed: 1, recipeFile: RECIPE }),
        [RECIPE, 'data.path', '"datasets/irs.csv" not found', resolve('datasets/irs.csv'), 'did you mean "datasets/iris.csv"', 'Correct data.path'],
      );
      expect(msg).to.include(join(packageRoot()!, 'datasets/irs.csv'));
    });

    it('finds shipped data relative to the package folder from another directory', async () => {
      const cwd = process.cwd();
      process.chdir(dir);
      try {
        const d = await loadData(iris(), { seed: 1 });
        expect(d.train.count).to.equal(120);
        expect(d.sources[0]).to.equal(join(packageRoot()!, 'datasets/iris.csv'));
      } finally {
        process.chdir(cwd);
      }
    });
  });

  describe('split and normalize helpers', () => {
    it('stratifiedSplit is deterministic and every prefix of train stays near-stratified', () => {
      const y = new Int32Array(1000);
      for (let i = 0; i < 1000; i++) y[i] = i < 700 ? 0 : i < 900 ? 1 : 2;
      const a = stratifiedSplit(y, 3, 0.1, 5);
      const b = stratifiedSplit(y, 3, 0.1, 5);
      expect(Array.from(a.train)).to.deep.equal(Array.from(b.train));
      expect(a.validation.length).to.equal(70 + 20 + 10);
      for (const n of [10, 50, 200]) {
        const c = [0, 0, 0];
        for (const i of a.train.subarray(0, n)) c[y[i]]++;
        expect(Math.abs(c[0] - n * 0.7)).to.be.at.most(1.5);
        expect(Math.abs(c[2] - n * 0.1)).to.be.at.most(1.5);
      }
    });

    it('applyNormalize applies each kind in place', () => {
      const x = new Float32Array([1, 10, 3, 30]);
      applyNormalize(x, 2, { kind: 'standard', mean: [2, 20], std: [1, 10] });
      expect(Array.from(x)).to.deep.equal([-1, -1, 1, 1]);
      const y = new Float32Array([0, 5, 10, 5]);
      applyNormalize(y, 2, { kind: 'minmax', min: [0, 5], max: [10, 5] });
      expect(Array.from(y)).to.deep.equal([0, 0, 1, 0]);
      const z = new Float32Array([255, 0]);
      applyNormalize(z, 2, { kind: 'affine', scale: 1 / 255, shift: -0.5 });
      expect(z[0]).to.be.closeTo(0.5, 1e-6);
      expect(z[1]).to.be.closeTo(-0.5, 1e-6);
      expect(() => applyNormalize(x, 3, { kind: 'standard', mean: [0, 0], std: [1, 1] })).to.throw(HepolyError, /does not belong/);
    });
  });

  describe('idx', () => {
    function idxImages(n: number, side: number, pix: (i: number, k: number) => number): Buffer {
      const buf = Buffer.alloc(16 + n * side * side);
      buf.writeUInt32BE(0x803, 0);
      buf.writeUInt32BE(n, 4);
      buf.writeUInt32BE(side, 8);
      buf.writeUInt32BE(side, 12);
      for (let i = 0; i < n; i++) for (let k = 0; k < side * side; k++) buf[16 + i * side * side + k] = pix(i, k);
      return buf;
    }
    function idxLabels(values: number[]): Buffer {
      const buf = Buffer.alloc(8 + values.length);
      buf.writeUInt32BE(0x801, 0);
      buf.writeUInt32BE(values.length, 4);
      values.forEach((v, i) => (buf[8 + i] = v));
      return buf;
    }

    it('loads Fashion-MNIST: train/validation split from the train file, test file as test', async () => {
      const cfg = data({
        source: 'idx',
        train: { images: 'datasets/fashion-mnist/train-images-idx3-ubyte.gz', labels: 'datasets/fashion-mnist/train-labels-idx1-ubyte.gz' },
        test: { images: 'datasets/fashion-mnist/t10k-images-idx3-ubyte.gz', labels: 'datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz' },
        limit: 1000,
        test_limit: 500,
      });
      const d: LoadedData = await loadData(cfg, { seed: 42 });
      expect(d.preprocess.inputShape).to.deep.equal([28, 28, 1]);
      expect(d.preprocess.labels).to.deep.equal(['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
      expect(d.preprocess.normalize).to.deep.equal({ kind: 'affine', scale: 1 / 255, shift: 0 });
      expect(d.sources).to.have.length(4);
      expect(d.train.count).to.equal(1000);
      expect(d.train.x.length).to.equal(1000 * 784);
      expect(classCounts(d.validation, 10)).to.deep.equal(new Array(10).fill(600));
      for (const c of classCounts(d.train, 10)) expect(c).to.be.within(99, 101);
      expect(d.test!.count).to.equal(500);
      expect(d.test!.y[0]).to.equal(9);
      let lo = Infinity;
      let hi = -Infinity;
      for (const v of d.train.x) (lo = Math.min(lo, v)), (hi = Math.max(hi, v));
      expect(lo).to.equal(0);
      expect(hi).to.be.closeTo(1, 1e-6);
    });

    it('standardizes IDX images with a scalar affine from the train split, reusable exactly', async () => {
      const n = 60;
      const labels = Array.from({ length: n }, (_, i) => [3, 5, 7][i % 3]);
      const img = fixture('s-images', gzipSync(idxImages(n, 4, (i, k) => (i * 13 + k * 5) & 255)));
      const lab = fixture('s-labels', idxLabels(labels));
      const timg = fixture('s-test-images', idxImages(9, 4, (i, k) => (i + k) * 3));
      const tlab = fixture('s-test-labels', gzipSync(idxLabels([3, 5, 7, 3, 5, 7, 3, 5, 7])));
      const cfg = data({ source: 'idx', train: { images: img, labels: lab }, test: { images: timg, labels: tlab }, normalize: 'standard', split: { validation: 0.2 } });
      const d = await loadData(cfg, { seed: 1 });
      expect(d.preprocess.labels).to.deep.equal(['3', '5', '7']);
      expect(d.preprocess.inputShape).to.deep.equal([4, 4, 1]);
      expect(d.preprocess.normalize.kind).to.equal('affine');
      const all = columnStats(d.train.x, 1);
      expect(all.mean[0]).to.be.closeTo(0, 1e-4);
      expect(all.std[0]).to.be.closeTo(1, 1e-3);
      expect(classCounts(d.validation, 3)).to.deep.equal([4, 4, 4]);
      expect(d.test!.count).to.equal(9);
      const again = await loadData(cfg, { seed: 1, preprocess: JSON.parse(JSON.stringify(d.preprocess)) });
      expect(Array.from(again.train.x)).to.deep.equal(Array.from(d.train.x));
      expect(Array.from(again.test!.x)).to.deep.equal(Array.from(d.test!.x));
      // a test label outside the saved mapping
      const bad = fixture('s-bad-labels', idxLabels([3, 5, 7, 3, 5, 7, 3, 5, 8]));
      const cfg2 = data({ source: 'idx', train: { images: img, labels: lab }, test: { images: timg, labels: bad } });
      await expectError(() => loadData(cfg2, { seed: 1, preprocess: d.preprocess }), ['s-bad-labels', 'data.test.labels', 'class "8"', 'not one of the classes']);
    });

    it('errors on a test file of another image size and on missing files', async () => {
      const img = fixture('m-images', idxImages(4, 4, () => 1));
      const lab = fixture('m-labels', idxLabels([0, 1, 0, 1]));
      const timg = fixture('m-test-images', idxImages(2, 5, () => 1));
      const tlab = fixture('m-test-labels', idxLabels([0, 1]));
      await expectError(
        () => loadData(data({ source: 'idx', train: { images: img, labels: lab }, test: { images: timg, labels: tlab } }), { seed: 1, recipeFile: RECIPE }),
        [RECIPE, 'data.test.images', '4 x 4', '5 x 5', 'same data set'],
      );
      await expectError(
        () => loadData(data({ source: 'idx', train: { images: img, labels: join(dir, 'nope-labels') } }), { seed: 1, recipeFile: RECIPE }),
        [RECIPE, 'data.train.labels', 'nope-labels', 'not found'],
      );
    });

    it('looks Fashion-MNIST file names up in the Debian data folder too', () => {
      const c = dataPathCandidates('data/train-images-idx3-ubyte.gz');
      expect(c).to.include('/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz');
      expect(c).to.include('/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte');
      expect(c[0]).to.equal(resolve('data/train-images-idx3-ubyte.gz'));
      expect(dataPathCandidates('datasets/iris.csv').some((p) => p.startsWith('/usr/share'))).to.equal(false);
    });
  });
});
