import { HepolyError } from '../util/errors.js';
import type { HeProgram, RefreshPoint, Step, TensorInfo } from './program.js';
import { stepSources } from './program.js';

/**
 * `--refresh client`: SEAL has no CKKS bootstrapping, so a program deeper than the modulus
 * chain is cut into segments that each fit it. Between two segments the server sends the
 * ciphertexts still needed to the client, which decrypts them and encrypts the same slot
 * vectors again at the top level. Every such round trip is an interactive step: it is
 * counted and named in the report. In a validation run the client is the model owner, so the
 * values it sees in between leak nothing; in a deployment they would be intermediate
 * activations revealed to the data owner, which is why the flag is opt-in.
 */

/** The part of a client that a refresh needs (HEClient, SimClient, or a transformer client). */
export interface RefreshingClient {
  decrypt(bytes: Uint8Array): Float64Array;
  encrypt(vectors: Float64Array[]): Uint8Array[];
}

/**
 * Client side of one refresh: decrypt each ciphertext and encrypt its slots again at the top
 * level and the default scale. Layout-agnostic (every slot is carried over), so it serves any
 * packing, e.g. deep attention in batch packing.
 */
export function refreshCiphertexts(client: RefreshingClient, cts: Uint8Array[]): Uint8Array[] {
  return client.encrypt(cts.map((b) => client.decrypt(b)));
}

/**
 * The server's only way back to the client: ciphertexts out, fresh ciphertexts in. `label`
 * names the tensor (for the report); in a deployment this is a network round trip.
 */
export type RefreshChannel = (label: string, cts: Uint8Array[]) => Promise<Uint8Array[]> | Uint8Array[];

/** One sample's tensors at a segment boundary: each tensor's ciphertexts. */
export type SegmentTensors = { tensor: number; cts: Uint8Array[] }[];

/**
 * The client's part at boundary `j` of a cut program, for each sample of a segment's results:
 * the tensors the next segment starts from, refreshed through `refresh`, counted into
 * `records[j]` (ciphertexts and bytes each way). HEServer runs it between its own segments;
 * a queued run (src/queue/) between two segment jobs.
 */
export async function refreshSegmentOutputs(p: HeProgram, j: number, outputs: SegmentTensors[], refresh: RefreshChannel, records: RefreshRecord[]): Promise<SegmentTensors[]> {
  const point = p.refreshes![j];
  const rec = (records[j] ??= { before: refreshPointName(p, point), tensors: point.tensors.map((t) => p.tensors[t.src].label), ciphertexts: 0, bytesToClient: 0, bytesToServer: 0 });
  const carry: SegmentTensors[] = [];
  for (const o of outputs) {
    const next: SegmentTensors = [];
    for (const { src, out } of point.tensors) {
      const sent = o.find((x) => x.tensor === src)!.cts;
      const back = await refresh(p.tensors[src].label, sent);
      rec.ciphertexts += sent.length;
      rec.bytesToClient += sent.reduce((a, b) => a + b.length, 0);
      rec.bytesToServer += back.reduce((a, b) => a + b.length, 0);
      next.push({ tensor: out, cts: back });
    }
    carry.push(next);
  }
  return carry;
}

/** One refresh point as the report shows it. */
export interface RefreshRecord {
  /** the step the chain would have overflowed at, named by its graph layers */
  before: string;
  tensors: string[];
  /** ciphertexts per pass (per sample in sample packing, per batch in batch packing) */
  ciphertexts: number;
  bytesToClient: number;
  bytesToServer: number;
}

export interface RefreshSummary {
  /** refresh round trips per evaluation pass */
  perPass: number;
  /** over the whole run (passes x points) */
  total: number;
  points: RefreshRecord[];
}

/** The refusal without `--refresh client`: depth needed vs available, and both ways out. */
export function tooDeepMessage(depth: number, levels: number, where: string): string {
  return (
    `${where}: the network needs multiplicative depth ${depth} but ${levels} levels are available, and SEAL has no CKKS bootstrapping. ` +
    `Pass --refresh client (the client decrypts and re-encrypts where the levels run out, about ${Math.max(1, Math.ceil(depth / Math.max(1, levels)) - 1)} interactive round trip(s) per pass, each reported), ` +
    'or use a shallower model or fewer activation layers (each quad costs 1 level, each linear layer 1) and retrain'
  );
}

/**
 * Cuts `p` so no tensor is more than `levels` levels below a fresh encryption. Greedy: a cut
 * goes right before the first step that would overflow (moved back over struct steps, so only
 * tensors that own ciphertexts are refreshed), and every tensor still needed after it (the
 * residual sources too) is refreshed there, so all of a segment's inputs start at the top.
 */
export function segmentProgram(p: HeProgram, levels: number): HeProgram {
  if (levels < 1) throw new HepolyError(`--refresh client: the parameters give ${levels} levels; each segment needs at least 1`);
  const tensors: TensorInfo[] = p.tensors.map((t) => ({ ...t }));
  const remap = new Map<number, number>();
  const id = (t: number) => remap.get(t) ?? t;
  const depthOf = (t: number) => tensors[id(t)].depth;
  const stepDepth = (s: Step) => {
    const d = Math.max(...stepSources(s).map(depthOf));
    return s.kind === 'struct' ? d : d + 1;
  };
  const steps: Step[] = [];
  const refreshes: RefreshPoint[] = [];
  const fresh = new Set<number>([p.input]);
  tensors[p.input].depth = 0;
  for (let i = 0; i < p.steps.length; i++) {
    if (stepDepth(p.steps[i]) > levels) {
      let cut = steps.length;
      const lastCut = refreshes.length ? refreshes[refreshes.length - 1].before : 0;
      while (cut > lastCut && steps[cut - 1].kind === 'struct') cut--;
      // struct steps after the cut are evaluated again on the refreshed tensors
      const redo = p.steps.slice(i - (steps.length - cut), i);
      const defined = new Set([...fresh, ...steps.slice(0, cut).map((s) => s.out)]);
      steps.length = cut;
      const renamed = new Map<number, number>();
      const pairs: { src: number; out: number }[] = [];
      for (const s of [...redo, ...p.steps.slice(i)]) {
        for (const o of stepSources(s)) {
          const cur = id(o);
          if (!defined.has(cur)) continue;
          let out = renamed.get(cur);
          if (out === undefined) {
            out = tensors.length;
            const label = tensors[cur].label.endsWith(REFRESHED) ? tensors[cur].label : `${tensors[cur].label}${REFRESHED}`;
            tensors.push({ id: out, shape: tensors[cur].shape, depth: 0, label });
            renamed.set(cur, out);
            pairs.push({ src: cur, out });
            fresh.add(out);
          }
          remap.set(o, out);
        }
      }
      refreshes.push({ before: cut, tensors: pairs });
      for (const s of redo) steps.push(rewire(s, id, tensors, stepDepth));
      if (stepDepth(p.steps[i]) > levels) {
        throw new HepolyError(`--refresh client: step ${p.steps[i].nodes.join(', ')} needs more than ${levels} levels even from fresh ciphertexts`);
      }
    }
    steps.push(rewire(p.steps[i], id, tensors, stepDepth));
  }
  const output = id(p.output);
  return { ...p, tensors, steps, output, depth: Math.max(...tensors.map((t) => t.depth)), refreshes };
}

const REFRESHED = ' (refreshed by the client)';

function rewire(s: Step, id: (t: number) => number, tensors: TensorInfo[], stepDepth: (s: Step) => number): Step {
  const depth = stepDepth(s);
  tensors[s.out].depth = depth;
  if (s.kind === 'linear') return { ...s, terms: s.terms.map((t) => ({ ...t, src: id(t.src) })) };
  if (s.kind === 'power') return { ...s, a: id(s.a), b: id(s.b) };
  if (s.kind === 'dot') return { ...s, a: id(s.a), b: id(s.b), terms: s.terms.map((t) => ({ ...t, src: id(t.src) })) };
  return { ...s, src: id(s.src) };
}

/** A program's segments: step ranges, the tensors each starts from and hands on. */
export interface Segment {
  from: number;
  to: number;
  inputs: number[];
  /** tensors the next segment needs refreshed (the program output for the last) */
  outputs: number[];
}

export function programSegments(p: HeProgram): Segment[] {
  const cuts = p.refreshes ?? [];
  const segs: Segment[] = [];
  let from = 0;
  let inputs = [p.input];
  for (const r of cuts) {
    segs.push({ from, to: r.before, inputs, outputs: r.tensors.map((t) => t.src) });
    from = r.before;
    inputs = r.tensors.map((t) => t.out);
  }
  segs.push({ from, to: p.steps.length, inputs, outputs: [p.output] });
  return segs;
}

/** Which refreshed tensor each refresh source becomes, per segment boundary. */
export function refreshPairs(p: HeProgram, segment: number): { src: number; out: number }[] {
  return p.refreshes?.[segment]?.tensors ?? [];
}

/** Names a refresh point by the graph layers of the step it precedes. */
export function refreshPointName(p: HeProgram, r: RefreshPoint): string {
  const s = p.steps[r.before];
  return s ? s.nodes.join(', ') : 'the output';
}
