import { expect } from 'chai';
import * as tf from '@tensorflow/tfjs-core';
import { loadRecipe } from '../../src/recipe/load.js';
import type { Recipe } from '../../src/recipe/schema.js';
import { loadData, type Split } from '../../src/data/index.js';
import { buildGraph } from '../../src/models/build.js';
import { forward, initWeights } from '../../src/models/tf-interpreter.js';
import { initBackend } from '../../src/train/backend.js';
import { loadCheckpoint } from '../../src/train/checkpoint.js';
import { toParams } from '../../src/train/evaluate.js';
import { Run } from '../../src/train/loop.js';
import { loadTeacher } from '../../src/train/teacher.js';
import { resolvePretrained } from '../../src/train/teacher-path.js';
import { expectAllClose } from '../helpers/close.js';

/** One optimizer step as the trainer called it: the batch's inputs, labels and teacher logits. */
interface FedBatch {
  x: Float32Array;
  y: Int32Array;
  t: Float32Array;
}

/** Runs one training epoch of `run` and records every batch its step receives (copies: the buffers are reused). */
async function epochBatches(run: Run, train: Split, epoch: number): Promise<FedBatch[]> {
  const fed: FedBatch[] = [];
  const spy = run as unknown as { step: (x: Float32Array, y: Int32Array, t: Float32Array | null, n: number, clip: number | null) => unknown };
  const step = spy.step.bind(run);
  spy.step = (x, y, t, n, clip) => {
    expect(t, 'a distilling run passes teacher logits to every step').to.not.equal(null);
    fed.push({ x: x.slice(), y: y.slice(), t: t!.slice() });
    return step(x, y, t, n, clip);
  };
  await run.trainEpoch(train, epoch, 1e-3, () => {});
  return fed;
}

function argmax(row: Float32Array): number {
  let best = 0;
  for (let c = 1; c < row.length; c++) if (row[c] > row[best]) best = c;
  return best;
}

/** Fraction of the fed samples whose teacher logits pick the label the step trains on. */
function teacherBatchAccuracy(fed: FedBatch[], classes: number): number {
  let hits = 0;
  let count = 0;
  for (const b of fed) {
    for (let i = 0; i < b.y.length; i++, count++) if (argmax(b.t.subarray(i * classes, (i + 1) * classes)) === b.y[i]) hits++;
  }
  return hits / count;
}

describe('train/distill-batches: the teacher logits a step trains on belong to the samples of its batch', function () {
  this.timeout(120000);
  before(async () => {
    await initBackend();
  });

  it('after the epoch shuffle, each sample of a batch gets its own teacher row (synthetic teacher that encodes the sample id)', async () => {
    const { recipe } = loadRecipe('recipes/quickstart.yaml');
    const count = 70; // not a multiple of the batch: the last, short batch is checked too
    const features = 30;
    const classes = 2;
    // sample i: every feature is i / 100 (small: the student is quadratic); its "teacher" logits
    // are [i, -i]: the row says whose it is
    const x = Float32Array.from({ length: count * features }, (_, k) => Math.floor(k / features) / 100);
    const idOf = (v: number) => Math.round(v * 100);
    const y = Int32Array.from({ length: count }, (_, i) => i % classes);
    const teacherLogits = Float32Array.from({ length: count * classes }, (_, k) => (k % classes === 0 ? 1 : -1) * Math.floor(k / classes));
    const r: Recipe = { ...recipe, distill: { teacher: 'synthetic', temperature: 4, alpha: 0.7 } };
    const graph = buildGraph(r.model, [features], classes, 'quickstart.yaml');
    const run = new Run(graph, initWeights(graph, r.seed), r, 9001, teacherLogits);
    for (const epoch of [0, 1]) {
      const fed = await epochBatches(run, { x, y, count }, epoch);
      const ids = fed.flatMap((b) => Array.from({ length: b.y.length }, (_, i) => idOf(b.x[i * features])));
      // the epoch visits every sample once, and not in file order (else the check below proves nothing)
      expect([...ids].sort((a, b) => a - b)).to.deep.equal(Array.from({ length: count }, (_, i) => i));
      expect(ids.slice(0, 8), `epoch ${epoch} is shuffled`).to.not.deep.equal([0, 1, 2, 3, 4, 5, 6, 7]);
      for (const b of fed) {
        for (let i = 0; i < b.y.length; i++) {
          const id = idOf(b.x[i * features]);
          expect([b.t[i * classes], b.t[i * classes + 1]], `epoch ${epoch}, sample ${id}: its teacher row`).to.deep.equal([id, -id]);
          expect(b.y[i], `epoch ${epoch}, sample ${id}: its label`).to.equal(id % classes);
        }
      }
    }
    run.dispose();
  });

  it('the shipped fmnist-cnn-relu teacher, on the batches the trainer feeds the fmnist-cnn-kd student, is as accurate as on test images, in inference mode', async () => {
    const file = 'recipes/fmnist-cnn-kd.yaml';
    const base = loadRecipe(file).recipe;
    const recipe: Recipe = { ...base, data: { ...base.data, limit: 512, test_limit: 512 } as Recipe['data'] };
    const data = await loadData(recipe.data, { seed: recipe.seed, recipeFile: file });
    const classes = data.preprocess.labels.length;
    const graph = buildGraph(recipe.model, data.preprocess.inputShape, classes, file);
    // the trainer's own path: loadTeacher, then the whole training split's logits once
    const teacher = await loadTeacher(recipe.distill!, graph.inputShape, data.preprocess, file);
    const logits = await teacher.logits(data.train.x, data.train.count);
    const testLogits = await teacher.logits(data.test!.x, data.test!.count);
    teacher.dispose();
    const run = new Run(graph, initWeights(graph, recipe.seed), recipe, 9002, logits);
    const fed = await epochBatches(run, data.train, 0);
    run.dispose();

    const onBatches = teacherBatchAccuracy(fed, classes);
    const onTest = teacherBatchAccuracy([{ x: data.test!.x, y: data.test!.y, t: testLogits }], classes);
    // teachers.json: 0.9069 on all 10000 test images; a teacher fed misaligned, unnormalized or
    // re-laid-out inputs falls towards chance (0.1)
    expect(onTest, 'teacher on the student preprocessing of test images').to.be.greaterThan(0.75);
    expect(onBatches, `teacher on the fed training batches (test ${onTest.toFixed(3)})`).to.be.closeTo(onTest, 0.06);

    // the cached rows are the teacher's inference-mode logits of exactly the fed pixels
    const ckpt = loadCheckpoint(resolvePretrained(recipe.distill!.teacher, 'distill.teacher').path);
    const params = toParams(ckpt.weights);
    const b = fed[1];
    const n = b.y.length;
    const direct = tf.tidy(() => forward(ckpt.graph, params, tf.tensor(b.x, [n, ...graph.inputShape]), { training: false }).logits.dataSync() as Float32Array);
    params.forEach((t) => t.dispose());
    expectAllClose(b.t, direct, { atol: 1e-4, rtol: 1e-4 });
  });

  it('a batchnorm teacher (shipped resnet-relu) gives its inference-mode logits (moving statistics), not batch-statistics ones', async () => {
    const file = 'recipes/resnet-poly.yaml';
    const base = loadRecipe(file).recipe;
    const recipe: Recipe = { ...base, data: { ...base.data, limit: 32, test_limit: 16 } as Recipe['data'] };
    const data = await loadData(recipe.data, { seed: recipe.seed, recipeFile: file });
    const teacher = await loadTeacher(recipe.distill!, data.preprocess.inputShape, data.preprocess, file);
    const n = 16;
    const x = data.train.x.subarray(0, n * data.preprocess.inputShape.reduce((a, c) => a * c, 1));
    const got = await teacher.logits(x, n);
    teacher.dispose();
    const ckpt = loadCheckpoint(resolvePretrained(recipe.distill!.teacher, 'distill.teacher').path);
    expect(ckpt.graph.nodes.some((node) => node.layer.op === 'batchnorm'), 'resnet-relu has batchnorm layers').to.equal(true);
    const params = toParams(ckpt.weights);
    const run = (training: boolean) =>
      tf.tidy(() => forward(ckpt.graph, params, tf.tensor(x, [n, ...data.preprocess.inputShape]), { training }).logits.dataSync() as Float32Array);
    const inference = run(false);
    const batchStats = run(true);
    params.forEach((t) => t.dispose());
    expectAllClose(got, inference, { atol: 1e-4, rtol: 1e-4 });
    // the two modes must differ here, or the check above could not tell them apart
    const gap = Math.max(...got.map((v, i) => Math.abs(v - batchStats[i])));
    expect(gap, 'largest |inference - batch-statistics| logit').to.be.greaterThan(1e-2);
  });
});
