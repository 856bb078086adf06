import { expect } from 'chai';
import { compileProgram } from '../../src/he/compile.js';
import type { LayerSpec } from '../../src/models/graph.js';
import { summarize } from '../../src/models/summary.js';
import { chain, randomWeights } from '../he/fixtures.js';

/**
 * `hepoly summary` charges each layer the levels the compiler spends on it, including the one
 * level a network's output pays for a pooling or batchnorm factor that no linear layer after it
 * absorbs (a final global_avgpool used to show 0 levels while the compiler spent 1).
 */
const conv: LayerSpec = { op: 'conv2d', filters: 3, kernel: 3, stride: 1, padding: 'same', bias: true };
const square: LayerSpec = { op: 'activation', activation: { kind: 'square' } };
const bn: LayerSpec = { op: 'batchnorm', momentum: 0.9, epsilon: 1e-3 };
const CASES: Record<string, { layers: [string, LayerSpec][]; depth: number }> = {
  'conv, square, global_avgpool as the output': { layers: [['c', conv], ['a', square], ['gap', { op: 'global_avgpool' }]], depth: 3 },
  'conv, global_avgpool (the conv absorbs the factor)': { layers: [['c', conv], ['gap', { op: 'global_avgpool' }]], depth: 1 },
  'conv, square, avgpool, flatten (charged to the output)': { layers: [['c', conv], ['a', square], ['p', { op: 'avgpool', size: 2, stride: 2 }], ['f', { op: 'flatten' }]], depth: 3 },
  'conv, square, batchnorm': { layers: [['c', conv], ['a', square], ['b', bn]], depth: 3 },
  'conv, batchnorm (folded into the conv)': { layers: [['c', conv], ['b', bn]], depth: 1 },
  'conv, square, flatten (no factor)': { layers: [['c', conv], ['a', square], ['f', { op: 'flatten' }]], depth: 2 },
  'conv, square, pad (no factor)': { layers: [['c', conv], ['a', square], ['p', { op: 'pad', top: 1, bottom: 0, left: 1, right: 0 }]], depth: 2 },
};

describe('models/summary: levels per layer as the compiler spends them, at the output too', () => {
  for (const [name, { layers, depth }] of Object.entries(CASES)) {
    it(name, () => {
      const graph = chain([6, 6, 2], 3, layers);
      const program = compileProgram(graph, randomWeights(graph, 4));
      const summary = summarize(graph, null);
      expect(program.depth).to.equal(depth);
      expect(summary.he_depth, 'summary depth vs compiled depth').to.equal(program.depth);
      const compiled = Object.fromEntries(program.layers.map((l) => [l.node, l.levels]));
      const summarized = Object.fromEntries(summary.layers.map((l) => [l.name, l.he_depth]));
      expect(summarized, 'levels per layer').to.deep.equal(compiled);
    });
  }
});
