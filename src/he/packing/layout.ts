/**
 * Where each element of a tensor sits in sample packing: a global slot index
 * `ct * slots + slot`, possibly at several places (replicas), or -1 when the element is a
 * known zero (padding). Every linear map is compiled from an input layout to an output
 * layout, so layouts are the one thing the packing decides.
 *
 * Images use *planes*: channel c occupies a block of S slots (S a power of two, k = slots/S
 * blocks per ciphertext), pixel (h, w) at `offset + h*rowStride + w*colStride` in it. Because
 * k*S = slots, rotating by a multiple of S moves every channel block cyclically, so a
 * convolution's diagonals are (channel offset mod k) x (kernel tap): few rotations. Pooling
 * and stride-2 convolutions keep the grid and double the strides ("gapped" planes) instead of
 * compacting, which would cost a level. A strided convolution fills the gaps with other channels
 * instead of leaving them empty (multiplexed planes, as in Lee et al.'s multiplexed parallel
 * convolutions): channel c sits at one of `subs` offsets inside its block's grid cell, so a
 * ciphertext holds stride^2 times more channels and the next layers visit that many fewer
 * ciphertext pairs. Every (output channel, input channel, tap) still has one offset.
 *
 * Interleaved samples (`run` > 1): every position holds a run of `run` consecutive slots, one
 * per sample (sample s of element e at position + s), and the strides are multiples of the
 * run. A rotation by a stride then moves all the samples of a pixel together, so a kernel
 * entry's diagonal is shared by the run and filled by all its samples: the run is the tile's
 * innermost dimension, from 1 (sample packing) up to the slots.
 */
export interface PlaneInfo {
  H: number;
  W: number;
  C: number;
  /** slots per channel block (power of two) */
  S: number;
  /** channel blocks per ciphertext = slots / S */
  k: number;
  rowStride: number;
  colStride: number;
  offset: number;
  /** interleaved samples per position (1 when absent) */
  run?: number;
  /**
   * multiplexed planes: slot offsets inside a grid cell, one per channel sub-position (channel
   * c at subs[c mod subs.length], its block and ciphertext from c / subs.length); absent: [0]
   */
  subs?: number[];
}

export interface Layout {
  shape: number[];
  cts: number;
  /** replicas[r][element] = global slot, or -1; replica 0 always exists for present elements */
  replicas: Int32Array[];
  plane?: PlaneInfo;
  /** phase-grouped images (see phaseLayout) */
  phase?: PhaseInfo;
  /** dense outputs: value of element o repeats every `period` slots (rotate-and-sum fold) */
  period?: number;
  /** interleaved samples: sample s of element e at every position of e, plus s (1 when absent) */
  run?: number;
}

export function runOf(l: Layout): number {
  return l.run ?? 1;
}

/**
 * Phase-grouped image: pixel (h, w) belongs to group (h mod s, w mod s); each group is a stack
 * of compact (H/s x W/s) channel planes in its own ciphertexts. An s x s stride-s sum pool is
 * then the sum of the groups' ciphertexts (additions, no rotation) and its result is a compact
 * plane layout, and a stride-1 convolution between two phase-grouped layouts has offsets that
 * depend only on the tap and the group: few diagonals.
 */
export interface PhaseInfo {
  s: number;
  /** ciphertexts per group */
  ctsPerGroup: number;
  /** the compact plane of one group (H/s x W/s, all channels) */
  group: PlaneInfo;
}

export function nextPow2(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

export function elementCount(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Plane layout positions; `replicate` copies the channels into unused blocks of each ciphertext. */
export function planeLayout(plane: PlaneInfo, slots: number, replicate = false): Layout {
  const { H, W, C, S, k, rowStride, colStride, offset } = plane;
  const subs = plane.subs ?? [0];
  const n = H * W * C;
  const cts = Math.ceil(C / (k * subs.length));
  const copies = replicate && C <= k && subs.length === 1 ? Math.floor(k / C) : 1;
  const replicas: Int32Array[] = [];
  for (let r = 0; r < copies; r++) {
    const pos = new Int32Array(n);
    for (let h = 0; h < H; h++) {
      for (let w = 0; w < W; w++) {
        for (let c = 0; c < C; c++) {
          const sub = subs[c % subs.length];
          const cb = Math.floor(c / subs.length);
          const block = (cb % k) + r * C;
          const ct = Math.floor(cb / k);
          pos[(h * W + w) * C + c] = ct * slots + block * S + offset + sub + h * rowStride + w * colStride;
        }
      }
    }
    replicas.push(pos);
  }
  return { shape: [H, W, C], cts, replicas, plane, run: plane.run };
}

/** A compact image plane for an [H, W, C] tensor (`run` interleaved samples per pixel). */
export function compactPlane(shape: number[], slots: number, run = 1): PlaneInfo | null {
  const [H, W, C] = shape;
  const S = nextPow2(H * W) * run;
  if (S > slots) return null;
  return { H, W, C, S, k: slots / S, rowStride: W * run, colStride: run, offset: 0, run };
}

export function phaseLayout(shape: number[], s: number, slots: number, replicate = false, run = 1): Layout | null {
  const [H, W, C] = shape;
  if (s < 2 || H % s || W % s) return null;
  const group = compactPlane([H / s, W / s, C], slots, run);
  if (!group) return null;
  const ctsPerGroup = Math.ceil(C / group.k);
  const copies = replicate && C <= group.k ? Math.floor(group.k / C) : 1;
  const replicas: Int32Array[] = [];
  for (let r = 0; r < copies; r++) {
    const pos = new Int32Array(H * W * C);
    for (let h = 0; h < H; h++) {
      for (let w = 0; w < W; w++) {
        const g = (h % s) * s + (w % s);
        for (let c = 0; c < C; c++) {
          const ct = g * ctsPerGroup + Math.floor(c / group.k);
          const block = (c % group.k) + r * C;
          pos[(h * W + w) * C + c] = ct * slots + block * group.S + Math.floor(h / s) * group.rowStride + Math.floor(w / s) * group.colStride;
        }
      }
    }
    replicas.push(pos);
  }
  return { shape: [H, W, C], cts: s * s * ctsPerGroup, replicas, phase: { s, ctsPerGroup, group }, run };
}

/** A vector at slots [0, n*run) of consecutive ciphertexts. */
export function vectorLayout(n: number, slots: number, run = 1): Layout {
  const pos = new Int32Array(n);
  for (let i = 0; i < n; i++) pos[i] = i * run;
  return { shape: [n], cts: Math.ceil((n * run) / slots), replicas: [pos], run };
}

/**
 * A dense layer's output after the rotate-and-sum fold: element o at every o + j*period, in one
 * ciphertext (period = next power of two >= units).
 */
export function foldedLayout(units: number, slots: number, run = 1): Layout {
  const period = nextPow2(units) * run;
  const replicas: Int32Array[] = [];
  for (let j = 0; j < slots / period; j++) {
    const pos = new Int32Array(units);
    for (let o = 0; o < units; o++) pos[o] = o * run + j * period;
    replicas.push(pos);
  }
  return { shape: [units], cts: 1, replicas, period, run };
}

/** Same slots, new shape (flatten): element order is unchanged. */
export function relabel(l: Layout, shape: number[]): Layout {
  return { shape, cts: l.cts, replicas: l.replicas, period: l.period, run: l.run };
}

/** Zero padding: the new border elements have no slot (known zeros). */
export function padLayout(l: Layout, p: { top: number; bottom: number; left: number; right: number }): Layout {
  const [H, W, C] = l.shape;
  const H2 = H + p.top + p.bottom;
  const W2 = W + p.left + p.right;
  const replicas = l.replicas.map((src) => {
    const pos = new Int32Array(H2 * W2 * C).fill(-1);
    for (let h = 0; h < H; h++) for (let w = 0; w < W; w++) for (let c = 0; c < C; c++) pos[((h + p.top) * W2 + w + p.left) * C + c] = src[(h * W + w) * C + c];
    return pos;
  });
  const plane = l.plane ? { ...l.plane, H: H2, W: W2, offset: l.plane.offset - p.top * l.plane.rowStride - p.left * l.plane.colStride } : undefined;
  return { shape: [H2, W2, C], cts: l.cts, replicas, plane, run: l.run };
}

/** Slot vector placing `values[o]` at every position of element o, for every sample (for biases). */
export function placeValues(l: Layout, values: ArrayLike<number>, slots: number, ct: number): Float64Array | null {
  const v = new Float64Array(slots);
  const run = runOf(l);
  let any = false;
  for (const rep of l.replicas) {
    for (let o = 0; o < rep.length; o++) {
      const g = rep[o];
      if (g < 0 || Math.floor(g / slots) !== ct || values[o] === 0) continue;
      v.fill(values[o], g % slots, (g % slots) + run);
      any = true;
    }
  }
  return any ? v : null;
}
