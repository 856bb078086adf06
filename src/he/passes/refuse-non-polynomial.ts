import type { Graph } from '../../models/graph.js';
import { opOf } from '../../ops/registry.js';
import { HepolyError } from '../../util/errors.js';
import type { CompilePass } from './pass.js';

/** Checker: every layer is a polynomial the program IR can express, else one message naming them all. */
export const refuseNonPolynomialPass: CompilePass = {
  name: 'refuse-non-polynomial',
  run(state) {
    refuseNonPolynomial(state.graph, state.source);
    return { state, note: `${state.graph.nodes.length} layers, all polynomial` };
  },
};

/** One message naming every layer that CKKS cannot evaluate, and what to do about it. */
export function refuseNonPolynomial(graph: Graph, source: string): void {
  const bad = graph.nodes.map((n) => ({ n, why: opOf(n).polynomial(n.layer) })).filter((b) => b.why !== true);
  if (!bad.length) return;
  const what = bad.map(({ n, why }) => `${n.name} (${why})`).join(', ');
  throw new HepolyError(
    `${source}: layer ${what} is not a polynomial, so it cannot run on CKKS ciphertexts (HE can only add and multiply). ` +
      'Retrain with `activation: quad` (trainable a*x^2+b*x+c) and avgpool instead of maxpool, or distill this model into a polynomial student',
  );
}
