import type { GraphNode, LayerSpec } from '../models/graph.js';
import { HepolyError } from '../util/errors.js';
import type { OpDef } from './types.js';

/**
 * The op registry: `registerOp` checks a definition carries every face before anything can
 * look it up, so a half-written op fails where it is registered, not deep inside a compiler.
 */

const REQUIRED_FACES = [
  'name',
  'family',
  'kind',
  'doc',
  'attributes',
  'describe',
  'outputShape',
  'params',
  'tfjsForward',
  'referenceForward',
  'lowerHE',
  'levelCost',
  'polynomial',
  'rangeProbes',
  'foldsInto',
  'prunable',
  'packings',
  'examples',
] as const;

const registry = new Map<string, OpDef>();

export function registerOp<L extends LayerSpec>(def: OpDef<L>): void {
  const name = typeof def?.name === 'string' && def.name ? def.name : '(unnamed)';
  for (const face of REQUIRED_FACES) {
    // foldsInto may be null (the op is its own step), but it must be said
    if (!(face in def) || (def[face] === undefined || (def[face] === null && face !== 'foldsInto'))) {
      throw new HepolyError(`registerOp: op ${name} has no ${face} face. Every op declares ${REQUIRED_FACES.join(', ')} (see docs/adding-an-op.md)`);
    }
  }
  // an optional face, when given, must be whole: the exporter calls it without checking
  if (def.onnx !== undefined && typeof def.onnx?.export !== 'function') {
    throw new HepolyError(`registerOp: op ${name} has an onnx face without an export function (see src/ops/onnx-face.ts), or leave the face out to have ONNX export refuse the op`);
  }
  if (registry.has(name)) throw new HepolyError(`registerOp: op ${name} is registered twice (its family ${registry.get(name)!.family} and ${def.family})`);
  registry.set(name, def as unknown as OpDef);
}

/** The definition of an op by name; an unknown name is a checkpoint or graph the code cannot read. */
export function getOp(name: string): OpDef {
  const def = registry.get(name);
  if (!def) {
    throw new HepolyError(`unknown layer op "${name}": this hepoly knows ${[...registry.keys()].join(', ')}. The checkpoint was written by another version, or an op is not registered in src/ops/index.ts`);
  }
  return def;
}

/** The definition of a node's op. */
export function opOf(node: GraphNode): OpDef {
  return getOp(node.layer.op);
}

/** Removes an op registered at run time (a test's or a plugin's); shipped ops stay. */
export function unregisterOp(name: string): void {
  registry.delete(name);
}

export function allOps(): OpDef[] {
  return [...registry.values()];
}
