import { expect } from 'chai';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadRecipe } from '../../src/recipe/load.js';
import { HepolyError } from '../../src/util/errors.js';
import { tempDir } from '../helpers/tmp.js';

function errorOf(fn: () => unknown): HepolyError {
  try {
    fn();
  } catch (e) {
    expect(e).to.be.instanceOf(HepolyError);
    return e as HepolyError;
  }
  throw new Error('expected an error');
}

describe('recipe loading', () => {
  const tmp = tempDir();
  after(() => tmp.cleanup());
  const write = (name: string, text: string) => {
    const p = join(tmp.path, name);
    writeFileSync(p, text);
    return p;
  };

  const base = write(
    'base.yaml',
    `name: base
seed: 7
data: {source: csv, path: a.csv, label: y, split: {validation: 0.3}}
model: {kind: mlp, hidden: [64, 32], activation: {kind: quad}}
train: {epochs: 5, batch: 16, optimizer: {kind: adam, lr: 0.01}}
`,
  );

  it('extends: deep merge, lists replace, the child wins', () => {
    const child = write('child.yaml', `extends: base.yaml\nname: child\nmodel: {hidden: [8]}\ntrain: {epochs: 9}\n`);
    const { recipe, chain } = loadRecipe(child);
    expect(recipe.name).to.equal('child');
    expect(recipe.seed).to.equal(7);
    expect(recipe.model).to.deep.include({ kind: 'mlp', hidden: [8] });
    expect(recipe.train.epochs).to.equal(9);
    expect(recipe.train.batch).to.equal(16);
    expect(recipe.train.optimizer.lr).to.equal(0.01);
    expect(recipe.data).to.deep.include({ path: 'a.csv', split: { validation: 0.3 } });
    expect(chain).to.deep.equal([child, base]);
  });

  it('extends: a different model kind replaces the whole model section', () => {
    const child = write('cnn.yaml', `extends: base.yaml\nname: c\nmodel: {kind: cnn, layers: [{type: conv, filters: 4}, {type: dense}]}\n`);
    const { recipe } = loadRecipe(child);
    expect(recipe.model.kind).to.equal('cnn');
    expect(recipe.model).to.not.have.property('hidden');
  });

  it('applies defaults from the schema', () => {
    const r = loadRecipe(write('min.yaml', 'name: m\ndata: {source: csv, path: a.csv, label: y}\nmodel: {kind: mlp}\n')).recipe;
    expect(r.seed).to.equal(42);
    expect(r.train.optimizer).to.deep.include({ kind: 'adam', lr: 0.001 });
    expect(r.data).to.deep.include({ normalize: 'standard' });
  });

  it('--set overrides are typed by the schema', () => {
    const { recipe } = loadRecipe(base, ['train.epochs=3', 'model.hidden=[4, 2]', 'name=123', 'train.clip=0.5']);
    expect(recipe.train.epochs).to.equal(3);
    expect(recipe.model).to.deep.include({ hidden: [4, 2] });
    expect(recipe.name).to.equal('123');
    expect(recipe.train.clip).to.equal(0.5);
  });

  it('unknown key: names file, line, key path and suggests the right key', () => {
    const p = write('typo.yaml', 'extends: base.yaml\nname: t\ntrain:\n  optimiser: {kind: sgd}\n');
    const e = errorOf(() => loadRecipe(p));
    expect(e.message).to.match(/typo\.yaml:4/);
    expect(e.message).to.contain('train.optimiser');
    expect(e.message).to.contain('did you mean "optimizer"');
  });

  it('wrong type: names the key, what was expected and what was found', () => {
    const p = write('type.yaml', 'extends: base.yaml\nname: t\ntrain: {epochs: many}\n');
    const e = errorOf(() => loadRecipe(p));
    expect(e.message).to.match(/type\.yaml:3: train\.epochs: expected number, found "many"/);
  });

  it('a bad --set value is blamed on the --set', () => {
    const e = errorOf(() => loadRecipe(base, ['train.batch=-4']));
    expect(e.message).to.contain('--set train.batch=-4');
    expect(e.message).to.contain('train.batch');
  });

  it('an unknown model kind lists the kinds', () => {
    const e = errorOf(() => loadRecipe(base, ['model.kind=mpl']));
    expect(e.message).to.contain('expected one of mlp | cnn');
    expect(e.message).to.contain('did you mean "mlp"');
  });

  it('circular extends is refused', () => {
    write('a.yaml', 'extends: b.yaml\nname: a\n');
    const b = write('b.yaml', 'extends: a.yaml\nname: b\n');
    expect(errorOf(() => loadRecipe(b)).message).to.contain('circular');
  });

  it('invalid YAML names the line', () => {
    const p = write('bad.yaml', 'name: x\nmodel: {kind: mlp\n');
    expect(errorOf(() => loadRecipe(p)).message).to.match(/bad\.yaml:\d+:\d+: not valid YAML/);
  });

  it('a missing recipe path finds the shipped recipe of that name', () => {
    const { file } = loadRecipe('recipe/quickstart.yaml');
    expect(file).to.match(/recipes[/\\]quickstart\.yaml$/);
  });

  it('a misspelt recipe name suggests the shipped one', () => {
    expect(errorOf(() => loadRecipe('quikstart')).message).to.contain('did you mean recipes/quickstart.yaml');
  });

  it('every shipped recipe validates', () => {
    for (const name of ['quickstart', 'fmnist-mlp', 'fmnist-cnn', 'fmnist-cnn-relu']) {
      expect(loadRecipe(`recipes/${name}.yaml`).recipe.name).to.equal(name);
    }
  });
});
