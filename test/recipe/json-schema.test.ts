import { expect } from 'chai';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import { parse as parseYaml } from 'yaml';
import { recipeJsonSchemaText } from '../../src/recipe/json-schema.js';
import { hepoly } from '../helpers/cli.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const committedPath = join(root, 'recipe.schema.json');
const REGENERATE = 'npx tsc -p tsconfig.json && node bin/hepoly.js schema > recipe.schema.json';
const recipesDir = join(root, 'recipes');
const shipped = readdirSync(recipesDir).filter((f) => /\.ya?ml$/.test(f)).sort();

/** The committed schema, compiled by ajv exactly as an editor's validator would read it. */
let compiled: ReturnType<Ajv['compile']> | null = null;
function committedValidator() {
  if (!compiled) {
    const schema = JSON.parse(readFileSync(committedPath, 'utf8')) as object;
    compiled = new Ajv({ allErrors: true, strict: true }).compile(schema);
  }
  return compiled;
}

function errorsFor(doc: unknown): string[] {
  const validate = committedValidator();
  return validate(doc) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath} ${e.message} ${JSON.stringify(e.params)}`);
}

describe('recipe JSON Schema (recipe.schema.json)', () => {
  it('the committed file equals what `hepoly schema` generates now', () => {
    const committed = readFileSync(committedPath, 'utf8');
    expect(committed === recipeJsonSchemaText(), `recipe.schema.json is stale: the zod recipe schema changed. Regenerate it with: ${REGENERATE}`).to.equal(true);
  });

  it('`hepoly schema` prints that text', function () {
    const r = hepoly(['schema']);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout === readFileSync(committedPath, 'utf8'), `dist/ is stale or recipe.schema.json is: ${REGENERATE}`).to.equal(true);
  });

  it(`accepts every shipped recipe (${shipped.length}), extends children included`, () => {
    expect(shipped.length).to.be.greaterThan(10);
    const children = shipped.filter((f) => 'extends' in (parseYaml(readFileSync(join(recipesDir, f), 'utf8')) as object));
    expect(children.length, 'some shipped recipes extend another').to.be.greaterThan(0);
    for (const f of shipped) {
      const doc = parseYaml(readFileSync(join(recipesDir, f), 'utf8')) as unknown;
      expect(errorsFor(doc), f).to.deep.equal([]);
    }
  });

  it('every shipped recipe names the schema on its first line (yaml-language-server)', () => {
    for (const f of shipped) {
      const first = readFileSync(join(recipesDir, f), 'utf8').split('\n')[0];
      expect(first, `${f}: make its first line "# yaml-language-server: $schema=../recipe.schema.json" (editors then check it)`).to.equal('# yaml-language-server: $schema=../recipe.schema.json');
    }
  });

  const full = {
    name: 'x',
    data: { source: 'csv', path: 'a.csv', label: 'y' },
    model: { kind: 'mlp', hidden: [8], activation: { kind: 'quad' } },
    train: { epochs: 2, optimizer: { kind: 'adam', lr: 0.01 } },
  };

  it('accepts a complete recipe and rejects one missing a required section', () => {
    expect(errorsFor(full)).to.deep.equal([]);
    const { model: _model, ...noModel } = full;
    expect(errorsFor(noModel).join('\n')).to.match(/model/);
  });

  it('rejects a misspelt key, at the top, nested, and in a child recipe', () => {
    expect(errorsFor({ ...full, trian: { epochs: 2 } }).join('\n')).to.match(/additionalProperty.*trian/);
    expect(errorsFor({ ...full, train: { epoch: 2 } }).join('\n')).to.match(/additionalProperty.*epoch/);
    expect(errorsFor({ ...full, model: { ...full.model, activation: { kind: 'quad', degre: 2 } } }).join('\n')).to.match(/degre/);
    const child = { extends: 'base.yaml', name: 'c', train: { epochs: 3 } };
    expect(errorsFor(child)).to.deep.equal([]);
    expect(errorsFor({ ...child, train: { epochz: 3 } }).join('\n')).to.match(/additionalProperty.*epochz/);
    expect(errorsFor({ ...child, data: { limt: 100 } }).join('\n')).to.match(/limt/);
  });

  it('a child is partial in its sections but keeps types, and its lists stay complete', () => {
    expect(errorsFor({ extends: 'b.yaml', data: { limit: 100 }, model: { activation: { kind: 'square' } } })).to.deep.equal([]);
    expect(errorsFor({ extends: 'b.yaml', train: { epochs: 'ten' } }).join('\n')).to.match(/epochs/);
    // a list replaces the parent's whole, so each layer in it must be complete
    expect(errorsFor({ extends: 'b.yaml', model: { kind: 'cnn', layers: [{ type: 'conv' }] } }).join('\n')).to.match(/filters/);
  });
});
