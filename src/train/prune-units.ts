import { type Graph, type GraphNode, type WeightMap, inferShapes, weightKey } from '../models/graph.js';
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

const PER_CHANNEL = new Set(['activation', 'batchnorm', 'avgpool', 'global_avgpool', 'pad', 'flatten']);

export function unitLayers(graph: Graph, source: string): UnitLayer[] {
  const readers = new Map<string, GraphNode[]>();
  for (const n of graph.nodes) for (const i of n.inputs) readers.set(i, [...(readers.get(i) ?? []), n]);
  const out: UnitLayer[] = [];
  for (const producer of graph.nodes) {
    const L = producer.layer;
    if (L.op !== 'dense' && L.op !== 'conv2d') continue;
    if (producer.name === graph.output) continue;
    if (L.op === 'conv2d' && L.dirac) throw new HepolyError(`${source}: layer ${producer.name} is a Dirac convolution (W + alpha*I), whose channels cannot be removed one by one. Prune an mlp or cnn model`);
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
      if (n.layer.op === 'dense' || n.layer.op === 'conv2d') {
        consumer = n;
        break;
      }
      if (!PER_CHANNEL.has(n.layer.op)) throw new HepolyError(`${source}: layer ${n.name} (${n.layer.op}) mixes units, so the units of ${producer.name} cannot be pruned. Prune an mlp or cnn model`);
      if (n.layer.op === 'flatten') flattened = true;
      if (n.layer.op === 'batchnorm') between.push(n);
      at = n;
    }
    out.push({ producer, consumer, between, units: L.op === 'dense' ? L.units : L.filters, flattened });
  }
  return out;
}

/** Flat indices of a unit's incoming kernel weights (the producer kernel's last axis). */
export function incoming(w: WeightMap, u: UnitLayer, j: number): number[] {
  const k = w.get(weightKey(u.producer.name, 'kernel'))!;
  const idx: number[] = [];
  for (let i = j; i < k.data.length; i += u.units) idx.push(i);
  return idx;
}

/** Flat indices of a unit's outgoing kernel weights (its rows / input channel in the consumer). */
export function outgoing(w: WeightMap, u: UnitLayer, j: number): number[] {
  const k = w.get(weightKey(u.consumer.name, 'kernel'))!;
  const idx: number[] = [];
  if (u.consumer.layer.op === 'dense') {
    const outs = k.shape[1];
    const rows = k.shape[0];
    for (let r = 0; r < rows; r++) {
      if ((u.flattened ? r % u.units : r) !== j) continue;
      for (let c = 0; c < outs; c++) idx.push(r * outs + c);
    }
  } else {
    const [kh, kw, cin, cout] = k.shape;
    for (let p = 0; p < kh * kw; p++) for (let c = 0; c < cout; c++) idx.push((p * cin + j) * cout + c);
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
    const perUnit = [weightKey(u.producer.name, 'bias'), ...u.between.flatMap((b) => ['gamma', 'beta', 'moving_mean', 'moving_variance'].map((p) => weightKey(b.name, p)))];
    for (const key of perUnit) {
      const t = w.get(key);
      if (t) w.set(key, { shape: [kept], data: Float32Array.from(keep(t.data.length, (i) => i), (i) => t.data[i]) });
    }
    const ck = w.get(weightKey(u.consumer.name, 'kernel'));
    if (!ck) continue;
    if (u.consumer.layer.op === 'dense') {
      const [rows, outs] = ck.shape;
      const keptRows = keep(rows, (r) => (u.flattened ? r % u.units : r));
      const data = new Float32Array(keptRows.length * outs);
      keptRows.forEach((r, i) => data.set(ck.data.subarray(r * outs, (r + 1) * outs), i * outs));
      w.set(weightKey(u.consumer.name, 'kernel'), { shape: [keptRows.length, outs], data });
    } else {
      const [kh, kw, cin, cout] = ck.shape;
      const keptIn = keep(cin, (c) => c);
      const data = new Float32Array(kh * kw * keptIn.length * cout);
      for (let p = 0; p < kh * kw; p++) keptIn.forEach((c, i) => data.set(ck.data.subarray((p * cin + c) * cout, (p * cin + c + 1) * cout), (p * keptIn.length + i) * cout));
      w.set(weightKey(u.consumer.name, 'kernel'), { shape: [kh, kw, keptIn.length, cout], data });
    }
  }
  const L = u.producer.layer;
  if (L.op === 'dense') L.units = kept;
  else if (L.op === 'conv2d') L.filters = kept;
  u.units = kept;
  inferShapes(graph);
}
