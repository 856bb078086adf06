import { expect } from 'chai';
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { listTeachers } from '../../src/api/teachers.js';
import { printTeachers } from '../../src/cli/teachers.js';
import { loadRecipe, shippedRecipes } from '../../src/recipe/load.js';
import { HepolyError } from '../../src/util/errors.js';
import { packageRoot } from '../../src/util/paths.js';
import { tempDir } from '../helpers/tmp.js';

const shippedDir = join(packageRoot(), 'teachers');

function captureLog(fn: () => void): string {
  const lines: string[] = [];
  const orig = console.log;
  console.log = (...a: unknown[]) => void lines.push(a.join(' '));
  try {
    fn();
  } finally {
    console.log = orig;
  }
  return lines.join('\n');
}

describe('train/teacher-list: hepoly teachers lists what ships in teachers/', function () {
  this.timeout(60000);
  const tmp = tempDir();
  after(() => tmp.cleanup());
  const teachers = listTeachers(tmp.path);

  it('the index and the folder agree: every teacher in teachers/ is listed, every listed one is there', () => {
    const onDisk = readdirSync(shippedDir).filter((f) => statSync(join(shippedDir, f)).isDirectory() || f.endsWith('.onnx'));
    expect(teachers.map((t) => basename(t.path)).sort()).to.deep.equal(onDisk.sort());
    expect(teachers.map((t) => t.name)).to.include.members(['fmnist-cnn-relu', 'resnet-relu', 'vit-softmax', 'fmnist-teacher-large']);
  });

  it('each row is read from the teacher itself (architecture, parameters, size) beside its measured accuracy', () => {
    for (const t of teachers) {
      expect(t.test_accuracy, t.name).to.be.within(0.6, 1);
      expect(t.bytes, t.name).to.be.greaterThan(10_000);
      if (t.format === 'hepoly') {
        const recipe = readFileSync(join(t.path, 'recipe.yaml'), 'utf8');
        expect(recipe, `${t.name}: trained by the recipe of the same name`).to.match(new RegExp(`^name: ${t.name}$`, 'm'));
        expect(t.params, t.name).to.be.greaterThan(1000);
        expect(t.architecture, t.name).to.match(/^(cnn|resnet|transformer), (relu|gelu)/);
      } else {
        // the script that made it measured the same test accuracy on the full test set
        const expected = JSON.parse(readFileSync(`${t.path}.expected.json`, 'utf8')) as { test_accuracy: number };
        expect(t.test_accuracy, t.name).to.equal(expected.test_accuracy);
        expect(t.command).to.contain('scripts/make_onnx_teacher.py');
      }
    }
  });

  it('used_by names exactly the shipped recipes that distil from (or start from) each teacher', () => {
    const users = new Map<string, string[]>();
    for (const [name, file] of shippedRecipes()) {
      const r = loadRecipe(file).recipe;
      for (const ref of new Set([r.distill?.teacher, r.init_from])) {
        if (ref?.startsWith('teachers/')) users.set(ref.slice('teachers/'.length), [...(users.get(ref.slice('teachers/'.length)) ?? []), name]);
      }
    }
    for (const t of teachers) expect(t.used_by.slice().sort(), t.name).to.deep.equal((users.get(basename(t.path)) ?? []).sort());
  });

  it('hepoly teachers prints one row per teacher with its accuracy, and --json the same list', () => {
    const cwd = process.cwd();
    process.chdir(tmp.path);
    try {
      const text = captureLog(() => printTeachers(listTeachers(), {}));
      for (const t of teachers) expect(text).to.contain(t.name).and.contain(t.test_accuracy.toFixed(4));
      expect(text).to.contain('takes precedence');
      const json = JSON.parse(captureLog(() => printTeachers(listTeachers(), { json: true }))) as { name: string }[];
      expect(json.map((t) => t.name)).to.deep.equal(teachers.map((t) => t.name));
    } finally {
      process.chdir(cwd);
    }
  });

  it('a broken index names the file and the field', () => {
    const root = join(tmp.path, 'broken');
    mkdirSync(join(root, 'teachers'), { recursive: true });
    writeFileSync(join(root, 'teachers', 'teachers.json'), JSON.stringify({ teachers: [{ name: 'x', path: 'x', command: 'c', test_accuracy: 1.5, test_samples: 10, trained: '2026-12-03' }] }));
    expect(() => listTeachers(root)).to.throw(HepolyError, /teachers\.json: teachers\.0\.test_accuracy: /);
    writeFileSync(join(root, 'teachers', 'teachers.json'), JSON.stringify({ teachers: [{ name: 'x', path: 'gone', command: 'c', test_accuracy: 0.9, test_samples: 10, trained: '2026-12-03' }] }));
    expect(() => listTeachers(root)).to.throw(HepolyError, /teacher x: gone is missing/);
    writeFileSync(join(root, 'teachers', 'teachers.json'), '{');
    expect(() => listTeachers(root)).to.throw(HepolyError, /teachers\.json: not valid JSON/);
  });
});
