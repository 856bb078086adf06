import { HepolyError } from '../../util/errors.js';

/**
 * A tile tensor: a tensor cut into equal tiles, one tile per ciphertext. Each dimension has a
 * tile extent (the tile extents multiply to the slot count) and an order: `block` puts
 * consecutive elements in the same tile, `interleave` deals them round-robin over the tiles
 * along that dimension (so a sum over tiles lines elements up without rotations). A dimension
 * of size 1 with a tile extent above 1 is *replicated*: the value fills that tile axis, which
 * is what lets a later element-wise product meet it without a rotation.
 *
 * The two packings the evaluator runs are two points of this space, over the tensor
 * [samples, features]: batch packing is tile [slots, 1] (a ciphertext per feature, samples
 * across slots) and sample packing is tile [1, slots] (one sample's features across slots).
 * Tile [m, slots/m] is the point in between that `stacked` evaluation runs: m samples per
 * ciphertext, each in its own block of slots/m slots. Over [features, samples] instead, tile
 * [slots/m, m] is `interleaved` evaluation (samples innermost): m = 1 is sample packing's
 * vector layout and m = slots batch packing's, and the diagonal evaluator runs every m.
 */
export type DimOrder = 'block' | 'interleave';

export interface TileLayout {
  shape: number[];
  tile: number[];
  order: DimOrder[];
}

export function tileLayout(shape: number[], tile: number[], order?: DimOrder[]): TileLayout {
  if (shape.length !== tile.length) throw new HepolyError(`tile shape [${tile}] has ${tile.length} dimensions, the tensor [${shape}] has ${shape.length}`);
  for (const t of tile) if (!(Number.isInteger(t) && t >= 1)) throw new HepolyError(`tile shape [${tile}]: every extent must be a positive integer`);
  return { shape, tile, order: order ?? shape.map(() => 'block') };
}

export function slotsOf(l: TileLayout): number {
  return l.tile.reduce((a, b) => a * b, 1);
}

/** Tiles along each dimension (a replicated dimension needs one). */
export function tileCounts(l: TileLayout): number[] {
  return l.shape.map((n, d) => (isReplicated(l, d) ? 1 : Math.ceil(n / l.tile[d])));
}

export function isReplicated(l: TileLayout, d: number): boolean {
  return l.shape[d] === 1 && l.tile[d] > 1;
}

export function ciphertextCount(l: TileLayout): number {
  return tileCounts(l).reduce((a, b) => a * b, 1);
}

/** Fraction of slots holding a distinct element (replicas and padding are waste). */
export function utilization(l: TileLayout): number {
  const n = l.shape.reduce((a, b) => a * b, 1);
  return n / (ciphertextCount(l) * slotsOf(l));
}

/** (tile index, position inside the tile) of index i along dimension d. */
function place(l: TileLayout, d: number, i: number): [number, number] {
  const tiles = Math.ceil(l.shape[d] / l.tile[d]);
  return l.order[d] === 'interleave' ? [i % tiles, Math.floor(i / tiles)] : [Math.floor(i / l.tile[d]), i % l.tile[d]];
}

/** Slot vectors (one per tile, tiles in row-major order of the tile grid) holding `values` (row-major). */
export function packTiles(l: TileLayout, values: ArrayLike<number>): Float64Array[] {
  const counts = tileCounts(l);
  const slots = slotsOf(l);
  const out = Array.from({ length: ciphertextCount(l) }, () => new Float64Array(slots));
  const rank = l.shape.length;
  const idx = new Array<number>(rank).fill(0);
  const total = l.shape.reduce((a, b) => a * b, 1);
  for (let e = 0; e < total; e++) {
    // every element is written to each of its positions along replicated dimensions
    writeElement(l, counts, out, idx, values[e], 0, 0, 0);
    for (let d = rank - 1; d >= 0; d--) {
      if (++idx[d] < l.shape[d]) break;
      idx[d] = 0;
    }
  }
  return out;
}

function writeElement(l: TileLayout, counts: number[], out: Float64Array[], idx: number[], v: number, d: number, ct: number, slot: number): void {
  if (d === l.shape.length) {
    out[ct][slot] = v;
    return;
  }
  if (isReplicated(l, d)) {
    for (let r = 0; r < l.tile[d]; r++) writeElement(l, counts, out, idx, v, d + 1, ct * counts[d], slot * l.tile[d] + r);
    return;
  }
  const [t, p] = place(l, d, idx[d]);
  writeElement(l, counts, out, idx, v, d + 1, ct * counts[d] + t, slot * l.tile[d] + p);
}

/** The tensor (row-major) from its tiles; replicated dimensions are read at position 0. */
export function unpackTiles(l: TileLayout, tiles: Float64Array[]): Float64Array {
  const counts = tileCounts(l);
  const total = l.shape.reduce((a, b) => a * b, 1);
  const out = new Float64Array(total);
  const rank = l.shape.length;
  const idx = new Array<number>(rank).fill(0);
  for (let e = 0; e < total; e++) {
    let ct = 0;
    let slot = 0;
    for (let d = 0; d < rank; d++) {
      const [t, p] = isReplicated(l, d) ? [0, 0] : place(l, d, idx[d]);
      ct = ct * counts[d] + t;
      slot = slot * l.tile[d] + p;
    }
    out[e] = tiles[ct][slot];
    for (let d = rank - 1; d >= 0; d--) {
      if (++idx[d] < l.shape[d]) break;
      idx[d] = 0;
    }
  }
  return out;
}

/** Batch packing of `samples` x `features`: samples across slots, a ciphertext per feature. */
export function batchTiles(samples: number, features: number, slots: number): TileLayout {
  return tileLayout([samples, features], [slots, 1]);
}

/** Sample packing of a vector input: one sample's features across the slots. */
export function sampleTiles(features: number, slots: number): TileLayout {
  return tileLayout([1, features], [1, slots]);
}

/** m samples per ciphertext, each in a block of slots/m slots. */
export function stackedTiles(samples: number, features: number, slots: number, m: number): TileLayout {
  if (slots % m) throw new HepolyError(`stacked packing: ${m} samples per ciphertext must divide ${slots} slots`);
  return tileLayout([samples, features], [m, slots / m]);
}

/**
 * Interleaved packing of an input as [features, samples]: m samples innermost, slots/m
 * features per ciphertext (an image's channel planes also round their pixels up to a power of two).
 */
export function interleavedTiles(features: number, slots: number, m: number): TileLayout {
  if (slots % m) throw new HepolyError(`interleaved packing: ${m} samples per ciphertext must divide ${slots} slots`);
  return tileLayout([features, m], [slots / m, m]);
}
