import type { HeProgram } from './program.js';
import type { Stage } from './packing/batch.js';

/**
 * Where a batch pass's time goes, by component (the Power-Softmax paper's table: attention
 * products, power, softmax division, MLP, norm, client refreshes). The server times each
 * stage; a stage is charged to the component of its first step, named by the layer's op and
 * the role its lowering gave the product (`b1_attn scores` -> attention scores), so no op is
 * named here.
 */
export interface LatencyPart {
  component: string;
  ms: number;
  /** of the pass's evaluation time */
  share: number;
}

/** The component a step's output belongs to: the op of its layer, and its role within it. */
export function componentOf(program: HeProgram, stepIndex: number): string {
  const step = program.steps[stepIndex];
  const node = step.nodes[0];
  const op = program.layers.find((l) => l.node === node)?.op.split(' ')[0] ?? node;
  const label = program.tensors[step.out].label;
  const role = label.startsWith(`${node} `) ? label.slice(node.length + 1) : '';
  if (step.kind === 'power') return `${op} power`;
  if (step.kind === 'dot' && role && role !== 'products') return `${op} ${role}`;
  if (step.kind === 'linear') return `${op} (linear)`;
  // token packing's view of other tokens (keys, values, the token mean)
  if (step.kind === 'struct' && step.op.kind === 'rotate') return `${op} rotations`;
  return op;
}

/** Sums stage times by component, client refreshes as one more; largest first. */
export function latencyBreakdown(program: HeProgram, stages: Stage[], stageMs: number[], refreshMs: number): LatencyPart[] {
  const byComponent = new Map<string, number>();
  stages.forEach((st, k) => {
    const c = componentOf(program, st.steps[0]);
    byComponent.set(c, (byComponent.get(c) ?? 0) + (stageMs[k] ?? 0));
  });
  if (refreshMs > 0) byComponent.set('client refreshes', refreshMs);
  const total = [...byComponent.values()].reduce((a, b) => a + b, 0) || 1;
  return [...byComponent].map(([component, ms]) => ({ component, ms, share: ms / total })).sort((a, b) => b.ms - a.ms);
}
