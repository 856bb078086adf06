import { expect } from 'chai';
import { loadRecipe, shippedRecipes } from '../../src/recipe/load.js';
import { RecipeSchema, type Recipe } from '../../src/recipe/schema.js';
import { readFileSync } from 'node:fs';
import { loadData, readCsv, resolveDataPath } from '../../src/data/index.js';
import { buildGraph } from '../../src/models/build.js';
import { inferShapes, isPolynomial, isSequenceOp, layerOf } from '../../src/models/graph.js';
import { initWeights } from '../../src/models/tf-interpreter.js';
import { compileProgram } from '../../src/he/compile.js';
import { HepolyError } from '../../src/util/errors.js';

/**
 * Every recipe in recipes/ (not a hand-picked few): it loads through the schema, its data
 * gives an input shape and classes, its model builds a consistent graph, and a polynomial
 * model compiles for HE with its initial weights (no training needed to find a layer the
 * compiler cannot lower). Non-polynomial baselines must be refused by name.
 */

interface DataShape {
  inputShape: number[];
  classes: number;
}

/** The data sections repeat (fmnist in most recipes): each is read once. */
const dataShapes = new Map<string, Promise<DataShape>>();
function shapeOf(recipe: Recipe, file: string): Promise<DataShape> {
  const key = JSON.stringify(recipe.data);
  let s = dataShapes.get(key);
  if (!s) {
    s = recipe.federated?.partition === 'vertical' ? verticalShape(recipe, file) : loadData(recipe.data, { seed: recipe.seed, recipeFile: file }).then((d) => ({ inputShape: d.preprocess.inputShape, classes: d.preprocess.labels.length }));
    dataShapes.set(key, s);
  }
  return s;
}

/**
 * A vertical federated recipe's rows are joined across parties: the split model's bottom
 * layers together are one dense layer over every party's feature columns (the label party's
 * listed features, each bank's columns but its key); the classes are the label party's.
 */
async function verticalShape(recipe: Recipe, file: string): Promise<DataShape> {
  const parties = recipe.federated!.parties;
  const holder = parties.find((p) => p.label);
  expect(holder, 'a vertical recipe names its label party').to.not.equal(undefined);
  let features = 0;
  let classes = 0;
  for (const party of parties) {
    const { path, ref } = resolveDataPath(party.path, 'federated.parties.path', file);
    if (party === holder) {
      const t = await readCsv(path, { label: recipe.data.source === 'csv' ? recipe.data.label : '', features: party.features }, ref);
      features += t.features.length;
      classes = new Set(t.labels).size;
    } else {
      const header = readFileSync(path, 'utf8').split('\n', 1)[0].split(',');
      features += party.features?.length ?? header.filter((c) => c !== party.key).length;
    }
  }
  return { inputShape: [features], classes };
}

type Kind = 'polynomial' | 'transformer' | 'baseline';

/**
 * What the HE compiler should do, read from the recipe's own words (not from the graph the
 * builder made, so that a builder that drops a polynomial cannot change the expectation):
 * a transformer needs its recorded ranges, a model naming relu, gelu, softmax or maxpool is a
 * baseline, anything else must compile.
 */
function expectedKind(recipe: Recipe): Kind {
  if (recipe.model.kind === 'transformer') return 'transformer';
  return /"(relu|gelu|softmax|maxpool)"/.test(JSON.stringify(recipe.model)) ? 'baseline' : 'polynomial';
}

describe('recipe/shipped: every shipped recipe loads, builds its graph, and compiles for HE where its model is polynomial', function () {
  this.timeout(300000);
  const shipped = [...shippedRecipes().entries()].filter(([name]) => name !== 'base' && !name.endsWith('-base'));

  it('finds every recipe in recipes/ (the list below is not hand-picked)', () => {
    expect(shipped.length).to.be.at.least(17);
  });

  for (const [name, file] of shipped) {
    it(`${name}: schema, data shape, graph, and the HE compiler's verdict`, async () => {
      const { recipe } = loadRecipe(file);
      expect(recipe.name).to.equal(name);
      // what loadRecipe returns is a valid recipe in its own right (defaults applied)
      expect(RecipeSchema.safeParse(recipe).success, 'the loaded recipe re-validates').to.equal(true);
      const { inputShape, classes } = await shapeOf(recipe, file);
      const graph = buildGraph(recipe.model, inputShape, classes, file);
      const shapes = inferShapes(graph);
      expect(shapes.get(graph.output)).to.deep.equal([classes]);
      const weights = initWeights(graph, recipe.seed);
      const kind = expectedKind(recipe);
      if (kind === 'polynomial') {
        expect(graph.nodes.every((n) => isPolynomial(n.layer)), 'every layer the builder made is polynomial').to.equal(true);
        const p = compileProgram(graph, weights, { source: name });
        expect(p.classes).to.equal(classes);
        expect(p.depth).to.be.above(0);
        expect(p.steps.some((s) => s.kind === 'power'), 'a polynomial network squares something').to.equal(true);
      } else if (kind === 'transformer') {
        // one compiler for every model: a polynomial transformer is lowered once ranges.json gives
        // its power-softmax denominators' range (a freshly built graph has none, and says so);
        // a softmax/layernorm baseline is refused as not polynomial, by layer name
        const baseline = /"(relu|gelu|softmax|maxpool)"/.test(JSON.stringify(recipe.model));
        expect(graph.nodes.some((n) => isSequenceOp(layerOf(n))), 'a transformer graph has sequence layers').to.equal(true);
        expect(() => compileProgram(graph, weights, { source: name })).to.throw(HepolyError, baseline ? /layer \w+ \(.*\) is not a polynomial/ : /no observed range/);
      } else {
        // baselines (relu, maxpool) are refused by name, with the polynomial to use instead
        expect(() => compileProgram(graph, weights, { source: name })).to.throw(HepolyError, /is not a polynomial.*activation: quad/);
      }
    });
  }
});
