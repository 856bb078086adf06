import { type Graph, type GraphNode, type LayerSpec, type WeightMap, inferShapes, weightKey } from '../models/graph.js';
import { opOf } from '../ops/registry.js';
import type { Prunable } from '../ops/types.js';
import { HepolyError } from '../util/errors.js';

/**
 * The hidden units (dense neurons, conv channels) of a network, as pruning sees them: each
 * unit is one output of a `producer` layer and one input of the next weighted `consumer`
 * layer. Under batch packing a unit is one ciphertext (per pass); under sample packing a group
 * of units fills one ciphertext's slots. Removing a unit whose outgoing weights are all zero
 * changes nothing the network computes, so the graph simply shrinks: the HE compiler then
 * neither computes nor squares its ciphertexts.
 */
export interface UnitLayer {
  producer: GraphNode;
  consumer: GraphNode;
  /** per-channel layers between them whose parameters follow the units (batchnorm) */
  between: GraphNode[];
  units: number;
  /** a flatten between a conv and a dense: consumer row r belongs to unit r % channels */
  flattened: boolean;
}

type UnitsRole = Extract<Prunable<LayerSpec>, { role: 'units' }>;

/** The op's pruning face when its outputs are prunable units (dense neurons, conv channels). */
export function unitsRole(node: GraphNode): UnitsRole | null {
  const p = opOf(node).prunable;
  return p.role === 'units' ? p : null;
}

export function unitLayers(graph: Graph, source: string): UnitLayer[] {
  const readers = new Map<string, GraphNode[]>();
  for (const n of graph.nodes) for (const i of n.inputs) readers.set(i, [...(readers.get(i) ?? []), n]);
  const out: UnitLayer[] = [];
  for (const producer of graph.nodes) {
    const role = unitsRole(producer);
    if (!role || producer.name === graph.output) continue;
    refuseUnits(producer, role, source);
    const between: GraphNode[] = [];
    let flattened = false;
    let at = producer;
    let consumer: GraphNode | null = null;
    for (;;) {
      const next = readers.get(at.name) ?? [];
      if (next.length !== 1 || next[0].inputs.length !== 1) {
        throw new HepolyError(`${source}: the output of ${at.name} feeds ${next.map((n) => n.name).join(' and ') || 'nothing'} (a residual or branching connection), so its units cannot be pruned independently. Prune an mlp or cnn model`);
      }
      const n = next[0];
      const p = opOf(n).prunable;
      if (p.role === 'units') {
        refuseUnits(n, p, source);
        consumer = n;
        break;
      }
      if (p.role === 'mixes') throw new HepolyError(`${source}: layer ${n.name} (${n.layer.op}) mixes units, so the units of ${producer.name} cannot be pruned. Prune an mlp or cnn model`);
      if (p.flattens) flattened = true;
      if (p.params.length) between.push(n);
      at = n;
    }
    out.push({ producer, consumer, between, units: role.units(producer.layer), flattened });
  }
  return out;
}

function refuseUnits(node: GraphNode, role: UnitsRole, source: string): void {
  const why = role.refuse(node.layer);
  if (why) throw new HepolyError(`${source}: layer ${node.name} ${why}. Prune an mlp or cnn model`);
}

/** Flat indices of a unit's incoming kernel weights (the producer kernel's last axis). */
export function incoming(w: WeightMap, u: UnitLayer, j: number): number[] {
  const k = w.get(weightKey(u.producer.name, 'kernel'))!;
  const idx: number[] = [];
  for (let i = j; i < k.data.length; i += u.units) idx.push(i);
  return idx;
}

/**
 * The consumer kernel as [outer, inputs, inner] around its input axis (dense [in, units]:
 * outer 1; conv HWIO: outer k*k, inner cout), and which unit each input row belongs to.
 */
function consumerAxes(u: UnitLayer, shape: number[]): { outer: number; rows: number; inner: number; unitOf: (r: number) => number } {
  const axis = unitsRole(u.consumer)!.kernelInputAxis;
  const prod = (xs: number[]) => xs.reduce((a, b) => a * b, 1);
  return { outer: prod(shape.slice(0, axis)), rows: shape[axis], inner: prod(shape.slice(axis + 1)), unitOf: (r) => (u.flattened ? r % u.units : r) };
}

/** Flat indices of a unit's outgoing kernel weights (its rows / input channel in the consumer). */
export function outgoing(w: WeightMap, u: UnitLayer, j: number): number[] {
  const k = w.get(weightKey(u.consumer.name, 'kernel'))!;
  const { outer, rows, inner, unitOf } = consumerAxes(u, k.shape);
  const idx: number[] = [];
  for (let o = 0; o < outer; o++) {
    for (let r = 0; r < rows; r++) {
      if (unitOf(r) !== j) continue;
      for (let c = 0; c < inner; c++) idx.push((o * rows + r) * inner + c);
    }
  }
  return idx;
}

/**
 * Removes units from the graph and the weight maps (every map in `maps` holds tensors keyed
 * like the weights, e.g. masks). The caller guarantees the units' outgoing weights are zero,
 * so the network's function is unchanged.
 */
export function removeUnits(graph: Graph, maps: WeightMap[], u: UnitLayer, remove: Set<number>): void {
  if (!remove.size) return;
  const keep = (n: number, unitOf: (i: number) => number) => Array.from({ length: n }, (_, i) => i).filter((i) => !remove.has(unitOf(i)));
  const kept = u.units - remove.size;
  for (const w of maps) {
    const pk = w.get(weightKey(u.producer.name, 'kernel'));
    if (pk) {
      const idx = keep(pk.data.length, (i) => i % u.units);
      w.set(weightKey(u.producer.name, 'kernel'), { shape: [...pk.shape.slice(0, -1), kept], data: Float32Array.from(idx, (i) => pk.data[i]) });
    }
    const perUnit = [weightKey(u.producer.name, 'bias'), ...u.between.flatMap((b) => betweenParams(b).map((p) => weightKey(b.name, p)))];
    for (const key of perUnit) {
      const t = w.get(key);
      if (t) w.set(key, { shape: [kept], data: Float32Array.from(keep(t.data.length, (i) => i), (i) => t.data[i]) });
    }
    const ck = w.get(weightKey(u.consumer.name, 'kernel'));
    if (ck) w.set(weightKey(u.consumer.name, 'kernel'), dropRows(ck, consumerAxes(u, ck.shape), unitsRole(u.consumer)!.kernelInputAxis, (r) => remove.has(r)));
  }
  u.producer.layer = unitsRole(u.producer)!.withUnits(u.producer.layer, kept);
  u.units = kept;
  inferShapes(graph);
}

function betweenParams(node: GraphNode): string[] {
  const p = opOf(node).prunable;
  return p.role === 'passes' ? p.params : [];
}

/** The kernel without the input rows whose unit is removed. */
function dropRows(
  k: { shape: number[]; data: Float32Array },
  ax: ReturnType<typeof consumerAxes>,
  axis: number,
  removed: (unit: number) => boolean,
): { shape: number[]; data: Float32Array } {
  const keptRows = Array.from({ length: ax.rows }, (_, r) => r).filter((r) => !removed(ax.unitOf(r)));
  const data = new Float32Array(ax.outer * keptRows.length * ax.inner);
  for (let o = 0; o < ax.outer; o++) {
    keptRows.forEach((r, i) => data.set(k.data.subarray((o * ax.rows + r) * ax.inner, (o * ax.rows + r + 1) * ax.inner), (o * keptRows.length + i) * ax.inner));
  }
  const shape = [...k.shape];
  shape[axis] = keptRows.length;
  return { shape, data };
}
