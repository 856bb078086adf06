import { expect } from 'chai';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadRecipe, shippedRecipes } from '../../src/recipe/load.js';
import type { Recipe } from '../../src/recipe/schema.js';
import { loadData, type LoadedData } from '../../src/data/index.js';
import { buildGraph } from '../../src/models/build.js';
import { initWeights } from '../../src/models/tf-interpreter.js';
import { initBackend } from '../../src/train/backend.js';
import { loadCheckpoint } from '../../src/train/checkpoint.js';
import { loadTeacher } from '../../src/train/teacher.js';
import { resolvePretrained } from '../../src/train/teacher-path.js';
import { packageRoot } from '../../src/util/paths.js';
import { train } from '../../src/api/train.js';
import { tempDir } from '../helpers/tmp.js';

/** Every shipped recipe that names a pretrained model (distill.teacher or init_from). */
function pretrainedRecipes(): { name: string; recipe: Recipe; file: string }[] {
  return [...shippedRecipes().entries()]
    .map(([name, file]) => ({ name, file, recipe: loadRecipe(file).recipe }))
    .filter((r) => r.recipe.distill || r.recipe.init_from);
}

function argmaxAccuracy(logits: Float32Array, y: Int32Array, classes: number): number {
  let hits = 0;
  for (let i = 0; i < y.length; i++) {
    let best = 0;
    for (let c = 1; c < classes; c++) if (logits[i * classes + c] > logits[i * classes + best]) best = c;
    if (best === y[i]) hits++;
  }
  return hits / y.length;
}

describe('train/teacher-path: shipped teachers and the precedence of your own checkpoints', function () {
  this.timeout(120000);
  const tmp = tempDir();
  // a folder with no checkpoints/ and no teachers/: what a fresh clone or an installed package sees
  const fresh = join(tmp.path, 'fresh');
  mkdirSync(fresh);
  const recipes = pretrainedRecipes();
  before(async () => {
    await initBackend();
  });
  after(() => tmp.cleanup());

  it('the distilling recipes are found (the list is read from recipes/, not hand-picked)', () => {
    expect(recipes.map((r) => r.name)).to.include.members(['fmnist-cnn-kd', 'fmnist-cnn-kd-onnx', 'resnet-poly', 'vit-poly-kd']);
  });

  it('on a fresh clone each distilling recipe resolves its teacher and init_from to a shipped teacher that loads and predicts', async () => {
    const data = new Map<string, Promise<LoadedData>>();
    for (const { name, recipe, file } of recipes) {
      for (const [field, ref] of [['distill.teacher', recipe.distill?.teacher], ['init_from', recipe.init_from]] as const) {
        if (!ref) continue;
        const r = resolvePretrained(ref, field, fresh);
        expect(r.source, `${name}: ${field} ${ref}`).to.equal('shipped');
        expect(r.path.startsWith(join(packageRoot(), 'teachers')), r.path).to.equal(true);
        expect(existsSync(r.path), r.path).to.equal(true);
        expect(r.note).to.contain('shipped teacher').and.contain('would take precedence');
      }
      const key = JSON.stringify(recipe.data);
      if (!data.has(key)) data.set(key, loadData({ ...recipe.data, limit: 16, test_limit: 48 } as typeof recipe.data, { seed: recipe.seed, recipeFile: file }));
      const d = await data.get(key)!;
      if (recipe.distill) {
        // the teacher sees exactly the student's preprocessed test images; shipped weights must be trained ones
        const path = resolvePretrained(recipe.distill.teacher, 'distill.teacher', fresh).path;
        const teacher = await loadTeacher({ ...recipe.distill, teacher: path }, d.preprocess.inputShape, d.preprocess, file);
        const test = d.test!;
        const logits = await teacher.logits(test.x, test.count);
        teacher.dispose();
        const acc = argmaxAccuracy(logits, test.y, d.preprocess.labels.length);
        expect(acc, `${name}: the shipped teacher's accuracy on ${test.count} test images`).to.be.at.least(0.5);
      }
      if (recipe.init_from) {
        // init_from copies weights by name: every shared name must have the student's shape
        const src = loadCheckpoint(resolvePretrained(recipe.init_from, 'init_from', fresh).path);
        const graph = buildGraph(recipe.model, d.preprocess.inputShape, d.preprocess.labels.length, file);
        const student = initWeights(graph, recipe.seed);
        const shared = [...student.keys()].filter((k) => src.weights.has(k));
        expect(shared.length, `${name}: weights shared with its init_from`).to.be.greaterThan(student.size / 2);
        for (const k of shared) expect(src.weights.get(k)!.shape, k).to.deep.equal(student.get(k)!.shape);
      }
    }
  });

  it('hepoly train resnet-poly says first which init_from and teacher it uses (stopped before epoch 1)', async () => {
    const events: string[] = [];
    const stop = new AbortController();
    const err = await train('recipes/resnet-poly.yaml', {
      set: { 'data.limit': 32, 'data.test_limit': 32 },
      out: join(tmp.path, 'resnet-poly'),
      signal: stop.signal,
      callbacks: {
        onStart: () => events.push('start'),
        onEpochStart: () => events.push('epoch'),
        onMessage: (m) => {
          events.push(m);
          if (m.startsWith('distilling from')) stop.abort();
        },
      },
    }).catch((e: Error) => e);
    expect(String(err)).to.match(/interrupted before epoch 1/);
    expect(events[0]).to.equal('start');
    expect(events[1].startsWith(`${resolvePretrained('teachers/resnet-relu', 'init_from').note}: copied `), events[1]).to.equal(true);
    expect(events[1]).to.match(/copied \d+ weight tensors/);
    expect(events[2]).to.equal(resolvePretrained('teachers/resnet-relu', 'distill.teacher').note);
    expect(events[3]).to.match(/^distilling from hepoly checkpoint .*resnet-relu/);
    expect(events).to.not.include('epoch');
  });

  it('a checkpoints/NAME of your own takes precedence over teachers/NAME; checkpoints/NAME falls back to the shipped one', () => {
    const own = join(tmp.path, 'own');
    mkdirSync(join(own, 'checkpoints', 'resnet-relu'), { recursive: true });
    writeFileSync(join(own, 'checkpoints', 'fmnist-teacher-large.onnx'), 'x');
    const mine = resolvePretrained('teachers/resnet-relu', 'distill.teacher', own);
    expect(mine.source).to.equal('own');
    expect(mine.path).to.equal(join(own, 'checkpoints', 'resnet-relu'));
    expect(mine.note).to.match(/checkpoints\/resnet-relu \(your own; it takes precedence over the shipped teachers\/resnet-relu\)/);
    expect(resolvePretrained('teachers/fmnist-teacher-large.onnx', 'distill.teacher', own).source).to.equal('own');
    // not trained here: the shipped one, also when the recipe names checkpoints/NAME
    const other = resolvePretrained('checkpoints/fmnist-cnn-relu', 'init_from', own);
    expect(other.source).to.equal('shipped');
    expect(other.path).to.equal(join(packageRoot(), 'teachers', 'fmnist-cnn-relu'));
    // any other path is read as given, never replaced by a shipped teacher
    for (const ref of ['my/resnet-relu', 'resnet-relu', 'checkpoints/no-such-teacher', '/abs/teachers/resnet-relu']) {
      const r = resolvePretrained(ref, 'distill.teacher', own);
      expect(r.source, ref).to.equal('as-given');
      expect(r.path, ref).to.equal(ref.startsWith('/') ? ref : join(own, ref));
    }
  });
});
