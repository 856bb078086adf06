import type { Graph } from '../../models/graph.js';
import { opOf } from '../../ops/registry.js';
import type { HeProgram, Step } from '../program.js';
import { stepSources } from '../program.js';
import { type CompilePass, programOf } from './pass.js';

/**
 * The level budget per graph layer (what --trace and the report print), from the steps that
 * consume levels: a layer spends the depth its steps add on its path (a polynomial's power
 * tree its height, not its step count; the convolutions of two branches summed in one linear
 * step one level each).
 */
export const attributeLevelsPass: CompilePass = {
  name: 'attribute-levels',
  run(state) {
    const program = programOf(state, 'attribute-levels');
    attributeLevels(program, state.graph);
    const spending = program.layers.filter((l) => l.levels > 0).length;
    return { state, note: `${spending} of ${program.layers.length} layers spend levels` };
  },
};

export function attributeLevels(program: HeProgram, graph: Graph): void {
  const layers = new Map(program.layers.map((l) => [l.node, l]));
  // a polynomial's power steps are charged by the span of its tree; a linear layer by its
  // deepest single step (a shared-source projection conv appears in steps of different
  // depths, and the span between them is the other branch's levels, not its own)
  const span = new Map<string, { from: number; to: number }>();
  const linearLevels = new Map<string, number>();
  const chainStart = new Map<string, number>();
  for (const s of program.steps) {
    if (s.kind === 'struct') continue;
    const from = Math.max(...stepSources(s).map((t) => program.tensors[t].depth));
    const to = program.tensors[s.out].depth;
    for (const owner of levelOwners(s, graph)) {
      const b = layers.get(owner);
      if (!b) continue;
      if (s.kind === 'linear') {
        // a chain of the layer's own linear steps counts from where the chain began, when the
        // chain is what sets this step's depth: a residual term that carries the layer's
        // kernel into a step deepened by another branch (a transformer's x + f(x)) is not its chain
        const own = stepSources(s)
          .filter((t) => program.tensors[t].depth === from)
          .map((t) => chainStart.get(`${owner}:${t}`))
          .filter((d): d is number => d !== undefined);
        const start = own.length ? Math.min(...own) : from;
        chainStart.set(`${owner}:${s.out}`, start);
        linearLevels.set(owner, Math.max(linearLevels.get(owner) ?? 0, to - start));
      } else {
        const had = span.get(owner);
        span.set(owner, { from: Math.min(had?.from ?? from, from), to: Math.max(had?.to ?? 0, to) });
      }
      if (s.kind === 'linear') {
        const others = s.nodes.filter((n) => n !== owner);
        b.how = `plaintext products, 1 level${others.length ? ` (folds ${others.join(', ')})` : ''}`;
      }
    }
  }
  for (const [owner, { from, to }] of span) layers.get(owner)!.levels = to - from;
  for (const [owner, levels] of linearLevels) layers.get(owner)!.levels = Math.max(layers.get(owner)!.levels, levels);
  for (const b of layers.values()) {
    if (b.levels === 0 && b.how === 'folded') {
      const node = graph.nodes.find((g) => g.name === b.node)!;
      b.how = opOf(node).foldsInto ?? 'folded into a neighbouring linear layer';
    }
  }
}

/** The layers a level-consuming step is charged to: its activation, or the linear layers it sums. */
function levelOwners(s: Exclude<Step, { kind: 'struct' }>, graph: Graph): string[] {
  if (s.kind === 'power') return [s.nodes[0]];
  const linear = s.nodes.filter((n) => {
    const g = graph.nodes.find((x) => x.name === n);
    return g && opOf(g).kind === 'linear';
  });
  return linear.length ? [...new Set(linear)] : [s.nodes[s.nodes.length - 1]];
}
