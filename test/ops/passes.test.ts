import { expect } from 'chai';
import { COMPILE_PASSES, compileProgram } from '../../src/he/compile.js';
import { getOp, registerOp, unregisterOp } from '../../src/ops/registry.js';
import type { LayerSpec } from '../../src/models/graph.js';
import type { OpDef } from '../../src/ops/types.js';
import { chain, quad, randomWeights, tinyCnn } from '../he/fixtures.js';

/**
 * The compiler as named passes: the runner reports each by name, in order, and the
 * check-levels pass refuses a lowering that spends more levels than its op's levelCost says
 * (the figure summary and parameter choice read).
 */
describe('he/compile passes', () => {
  it('runs and reports the passes in order', () => {
    const lines: string[] = [];
    const g = tinyCnn();
    const p = compileProgram(g, randomWeights(g, 3), { trace: (l) => lines.push(l) });
    expect(COMPILE_PASSES.map((x) => x.name)).to.deep.equal(['refuse-non-polynomial', 'fold-training', 'lower-affine', 'attribute-levels', 'check-levels']);
    expect(lines.map((l) => l.split(':')[0])).to.deep.equal(COMPILE_PASSES.map((x) => `compile pass ${x.name}`));
    expect(lines[2]).to.include(`depth ${p.depth}`);
    expect(lines[4]).to.match(/every layer spends its op's level cost/);
  });

  it('check-levels refuses an op whose lowering spends more than its levelCost', () => {
    // a dense op lowered as two products in a row (two levels) that claims one
    const dense = getOp('dense') as unknown as OpDef<Extract<LayerSpec, { op: 'dense' }>>;
    const twice: OpDef<Extract<LayerSpec, { op: 'dense' }>> = {
      ...dense,
      name: 'dense_twice_test' as 'dense',
      lowerHE: ({ layer: L, ins: [x], inShapes: [s], w, he }) => {
        const op = { kind: 'dense' as const, inSize: s[0], units: L.units, kernel: w('kernel') };
        return he.weighted(he.weighted(x, op, null), op, null);
      },
    };
    registerOp(twice);
    try {
      const g = chain([3], 3, [
        ['d1', { op: 'dense_twice_test' as 'dense', units: 3, bias: false }],
        ['act1', quad],
        ['d2', { op: 'dense', units: 3, bias: true }],
      ]);
      expect(() => compileProgram(g, randomWeights(g, 4))).to.throw(/layer d1 \(dense_twice_test\) spends 2 levels but its op's levelCost says 1/);
    } finally {
      unregisterOp('dense_twice_test'); // the registry is per process: later tests list every op
    }
  });
});
