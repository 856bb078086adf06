import { expect } from 'chai';
import { loadRecipe, shippedRecipes } from '../../src/recipe/load.js';
import { buildGraph } from '../../src/models/build.js';
import { isPolynomial } from '../../src/models/graph.js';
import { summarize } from '../../src/models/summary.js';
import { opOf } from '../../src/ops/registry.js';
import { compileProgram } from '../../src/he/compile.js';
import { readFileSync } from 'node:fs';
import type { AnyDataConfig } from '../../src/recipe/schema.js';
import { chain, randomWeights } from '../he/fixtures.js';
import type { Graph } from '../../src/models/graph.js';

/**
 * The level cost is computed in one place: `hepoly summary` reads each op's levelCost face,
 * and for every shipped polynomial recipe that equals the depth of the program the HE
 * compiler builds, as a whole and layer by layer (random weights with non-zero top
 * coefficients, so no polynomial degree collapses).
 */

/** The input a recipe's data gives, from the recipe and a CSV's header line (levels do not depend on the values). */
function inputOf(data: AnyDataConfig): { shape: number[]; classes: number } {
  // the image recipes all read 28x28 Fashion-MNIST; text windows are data.context characters
  if (data.source === 'idx') return { shape: [28, 28, 1], classes: 10 };
  if (data.source === 'text') return { shape: [data.context], classes: 40 };
  const header = readFileSync(data.path, 'utf8').split('\n', 1)[0].split(',');
  const features = data.features?.length ?? header.length - 1;
  return { shape: data.shape ? (data.shape.length === 2 ? [...data.shape, 1] : data.shape) : [features], classes: 2 };
}

describe('ops: summary levels = compiled program depth for every shipped polynomial recipe', function () {
  this.timeout(300000);
  const recipes = [...shippedRecipes().entries()].sort();

  it('finds the shipped recipes', () => {
    expect(recipes.map(([n]) => n)).to.include.members(['fmnist-cnn', 'fmnist-mlp', 'he-bench-mnist', 'resnet-poly', 'vit-poly']);
  });

  for (const degree of [3, 4, 5, 8]) {
    it(`poly degree ${degree}: its power tree is charged its height, ceil(log2 d), as summary says`, () => {
      const g: Graph = chain([4], 2, [
        ['dense1', { op: 'dense', units: 3, bias: true }],
        ['act1', { op: 'activation', activation: { kind: 'poly', degree } }],
        ['dense2', { op: 'dense', units: 2, bias: true }],
      ]);
      const p = compileProgram(g, randomWeights(g, 2));
      expect(p.layers.find((l) => l.node === 'act1')!.levels).to.equal(Math.ceil(Math.log2(degree)));
      expect(summarize(g, null).he_depth).to.equal(p.depth).and.to.equal(2 + Math.ceil(Math.log2(degree)));
    });
  }

  for (const [name, file] of recipes) {
    it(`${name}`, async () => {
      const { recipe } = loadRecipe(file);
      const { shape, classes } = inputOf(recipe.data);
      const graph = buildGraph(recipe.model, shape, classes, file);
      const summary = summarize(graph, null);
      const compilable = graph.nodes.every((n) => isPolynomial(n.layer));
      if (!compilable) {
        // non-polynomial baselines are refused by the compiler
        expect(() => compileProgram(graph, randomWeights(graph, 1))).to.throw(/not a polynomial/);
        return;
      }
      if (summary.he_depth === null) {
        // power-softmax's reciprocal is sized from the recorded denominator range: without ranges.json the compiler says so
        expect(() => compileProgram(graph, randomWeights(graph, 1))).to.throw(/no observed range for the power-softmax denominator/);
        return;
      }
      const program = compileProgram(graph, randomWeights(graph, 1));
      expect(summary.he_depth, 'summary levels vs compiled depth').to.equal(program.depth);
      for (const budget of program.layers) {
        const node = graph.nodes.find((n) => n.name === budget.node)!;
        const cost = opOf(node).levelCost(node.layer, { node: node.name, ranges: null });
        // a Dirac conv folds to one conv: its cost is its own; every layer spends what its op says
        expect(budget.levels, `${name}: ${budget.node} (${budget.op})`).to.equal(cost);
      }
    });
  }
});
