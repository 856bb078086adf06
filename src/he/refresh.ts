import type { HeProgram, RefreshPoint } from './program.js';

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
 * names the tensor (for the report); `at` says which program tensor and which of its elements
 * the ciphertexts are, for a client that checks what it decrypts (he-validate). In a
 * deployment this is a network round trip.
 */
export type RefreshChannel = (label: string, cts: Uint8Array[], at?: RefreshedPart) => Promise<Uint8Array[]> | Uint8Array[];

/** Where refreshed ciphertexts sit in the program: refresh point, tensor id, and the element each one holds. */
export interface RefreshedPart {
  point: number;
  tensor: number;
  elements: number[];
}

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
      const cts = o.find((x) => x.tensor === src)!.cts;
      // an empty part (an element batch packing leaves out) crosses neither way
      const present = cts.flatMap((b, i) => (b.length ? [i] : []));
      const sent = present.map((i) => cts[i]);
      const back = await refresh(p.tensors[src].label, sent, { point: j, tensor: src, elements: present });
      rec.ciphertexts += sent.length;
      rec.bytesToClient += sent.reduce((a, b) => a + b.length, 0);
      rec.bytesToServer += back.reduce((a, b) => a + b.length, 0);
      const fresh: Uint8Array[] = cts.map(() => new Uint8Array(0));
      present.forEach((i, k) => (fresh[i] = back[k]));
      next.push({ tensor: out, cts: fresh });
    }
    for (const t of point.carried ?? []) next.push({ tensor: t, cts: o.find((x) => x.tensor === t)!.cts });
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

/** The cut itself is the compiler pass src/he/passes/segment-refresh.ts; re-exported for the callers that cut for a ring they choose. */
export { segmentProgram } from './passes/segment-refresh.js';

/** A program's segments: step ranges, the tensors each starts from and hands on. */
export interface Segment {
  from: number;
  to: number;
  inputs: number[];
  /** tensors the next segment needs, refreshed or carried (the program output for the last) */
  outputs: number[];
}

export function programSegments(p: HeProgram): Segment[] {
  const cuts = p.refreshes ?? [];
  const segs: Segment[] = [];
  let from = 0;
  let inputs = [p.input];
  for (const r of cuts) {
    const carried = r.carried ?? [];
    segs.push({ from, to: r.before, inputs, outputs: [...r.tensors.map((t) => t.src), ...carried] });
    from = r.before;
    inputs = [...r.tensors.map((t) => t.out), ...carried];
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
