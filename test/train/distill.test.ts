import { expect } from 'chai';
import * as tf from '@tensorflow/tfjs-core';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { initBackend } from '../../src/train/backend.js';
import { distillationLoss } from '../../src/train/losses.js';
import { loadTeacher, onnxLayout } from '../../src/train/teacher.js';
import { readIdxImages } from '../../src/data/index.js';
import { HepolyError } from '../../src/util/errors.js';
import { hepoly } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';
import { expectAllClose } from '../helpers/close.js';

const fixture = 'test/fixtures/fmnist-teacher.onnx';

describe('knowledge distillation', function () {
  this.timeout(120000);
  const tmp = tempDir();
  before(async () => {
    await initBackend();
  });
  after(() => tmp.cleanup());

  it('KD loss matches a hand-computed case', () => {
    // student logits [1, 0], teacher [2, 0], label 1, T = 2, alpha = 0.5
    const softmax = (z: number[]) => z.map((v) => Math.exp(v) / z.reduce((a, b) => a + Math.exp(b), 0));
    const T = 2;
    const pt = softmax([2 / T, 0]);
    const ps = softmax([1 / T, 0]);
    const kl = pt[0] * Math.log(pt[0] / ps[0]) + pt[1] * Math.log(pt[1] / ps[1]);
    const ce = -Math.log(softmax([1, 0])[1]);
    const expected = 0.5 * T * T * kl + 0.5 * ce;
    const got = distillationLoss(tf.tensor2d([[1, 0]]), tf.tensor2d([[2, 0]]), tf.tensor1d([1], 'int32'), 2, T, 0.5).dataSync()[0];
    expect(got).to.be.closeTo(expected, 1e-5);
    // alpha = 1 and equal logits: nothing to learn from the teacher
    expect(distillationLoss(tf.tensor2d([[3, -1]]), tf.tensor2d([[3, -1]]), tf.tensor1d([0], 'int32'), 2, 4, 1).dataSync()[0]).to.be.closeTo(0, 1e-6);
  });

  it('the ONNX fixture (PyTorch export, NCHW) loads and its logits match the stored expectation', async () => {
    const expected = JSON.parse(readFileSync(`${fixture}.expected.json`, 'utf8')) as { logits: number[][]; labels: number[] };
    const preprocess = { labels: Array.from({ length: 10 }, (_, i) => String(i)), inputShape: [28, 28, 1], normalize: { kind: 'affine' as const, scale: 1 / 255, shift: 0 } };
    const teacher = await loadTeacher({ teacher: fixture, temperature: 4, alpha: 0.7 }, [28, 28, 1], preprocess, 'r.yaml');
    expect(teacher.description).to.contain('NCHW');
    // the first four test images in file order, scaled like hepoly's default IDX preprocessing
    const images = await readIdxImages('datasets/fashion-mnist/t10k-images-idx3-ubyte.gz', { file: 'x', field: 'data.test.images' });
    const x = Float32Array.from(images.data.subarray(0, 4 * 784), (v) => v / 255);
    const logits = await teacher.logits(x, 4);
    teacher.dispose();
    expectAllClose(logits, expected.logits.flat(), { atol: 1e-4, rtol: 1e-4 });
  });

  it('layout detection: NCHW, NHWC, ambiguous and mismatched shapes', () => {
    expect(onnxLayout(['batch', 1, 28, 28], [28, 28, 1], undefined, 'w')).to.equal('nchw');
    expect(onnxLayout(['batch', 28, 28, 1], [28, 28, 1], undefined, 'w')).to.equal('nhwc');
    expect(() => onnxLayout(['batch', 3, 3, 3], [3, 3, 3], undefined, 'w')).to.throw(HepolyError, /teacher_layout/);
    expect(onnxLayout(['batch', 3, 3, 3], [3, 3, 3], 'nhwc', 'w')).to.equal('nhwc');
    expect(() => onnxLayout(['batch', 3, 32, 32], [28, 28, 1], undefined, 'r.yaml: distill.teacher')).to.throw(HepolyError, /\[N, 1, 28, 28\]/);
    expect(() => onnxLayout(['batch', 20], [30], undefined, 'w')).to.throw(HepolyError, /takes 20 features, the data gives 30/);
  });

  it('bad teachers end in clear messages', () => {
    const out = join(tmp.path, 'o');
    const junk = join(tmp.path, 'junk.onnx');
    writeFileSync(junk, 'this is not a model');
    const cases: [string[], RegExp][] = [
      [['--set', `distill.teacher=${junk}`], /distill\.teacher: cannot read .*junk\.onnx as an ONNX model/],
      [['--set', 'distill.teacher=nope.onnx'], /distill\.teacher: nope\.onnx not found/],
      // the fixture expects 28x28 images; quickstart gives 30 features
      [['--set', `distill.teacher=${fixture}`], /distill\.teacher: the ONNX teacher takes input \[batch, 1, 28, 28\], the data gives 30 features/],
    ];
    for (const [args, pattern] of cases) {
      const r = hepoly(['train', 'recipes/quickstart.yaml', '--out', out, ...args]);
      expect(r.code, r.stderr).to.not.equal(0);
      expect(r.stderr).to.match(pattern);
    }
  });

  it('class-count mismatch with a hepoly teacher is refused', () => {
    const teacher = join(tmp.path, 'iris-teacher');
    const irisArgs = ['--set', 'data.path=datasets/iris.csv', '--set', 'data.label=species', '--set', 'train.epochs=1'];
    expect(hepoly(['train', 'recipes/quickstart.yaml', ...irisArgs, '--out', teacher]).code).to.equal(0);
    const r = hepoly(['train', 'recipes/quickstart.yaml', '--set', `distill.teacher=${teacher}`, '--out', join(tmp.path, 'x')]);
    expect(r.code).to.not.equal(0);
    expect(r.stderr).to.match(/distill\.teacher: the teacher .* takes input \[4\], the data gives \[30\]/);
  });

  it('a quad student distills from a ReLU checkpoint teacher end to end', () => {
    const teacher = join(tmp.path, 'relu');
    expect(hepoly(['train', 'recipes/quickstart.yaml', '--set', 'model.activation.kind=relu', '--set', 'train.epochs=8', '--out', teacher]).code).to.equal(0);
    const r = hepoly(['train', 'recipes/quickstart.yaml', '--set', `distill.teacher=${teacher}`, '--set', 'train.epochs=8', '--out', join(tmp.path, 'student'), '--json']);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.match(/distilling from hepoly checkpoint .*relu.*teacher train accuracy 0\.9\d+/);
    expect(r.json!.val_accuracy as number).to.be.greaterThan(0.9);
  });
});
