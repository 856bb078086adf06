import { decodeFrames, encodeFrames, jsonPart, parseJsonPart } from '../deploy/framing.js';
import { decodeProgram, encodeProgram } from '../deploy/program-codec.js';
import type { PublicBundle } from '../he/client.js';
import type { HeParams } from '../he/params.js';
import type { HeProgram } from '../he/program.js';
import type { SegmentTensors } from '../he/refresh.js';

/**
 * What a queue worker evaluates with, as bytes: the server artifact (CKKS parameters, the
 * compiled plaintext program, the evaluator mode) and the evaluation keys (public, relin,
 * Galois). Both are public; the secret key has no place in either format.
 */

/**
 * bumped when a layout changes: a worker refuses jobs of another format (2: segment jobs of
 * programs cut for client refreshes, their shards framed per tensor; 3: batch-packed shards,
 * one pass each, for transformers)
 */
export const QUEUE_FORMAT = 3;

export interface ServerArtifact {
  params: HeParams;
  program: HeProgram;
  mode: 'seal' | 'simulate';
  /** sample: a shard is samples, each its ciphertexts; batch: a shard is one pass, one ciphertext per element (absent: sample) */
  packing?: 'sample' | 'batch';
}

export function encodeArtifact(a: ServerArtifact): Uint8Array {
  const { json, bin } = encodeProgram(a.program);
  return encodeFrames([jsonPart({ format: QUEUE_FORMAT, params: a.params, mode: a.mode, packing: a.packing ?? 'sample' }), new TextEncoder().encode(json), bin]);
}

export function decodeArtifact(bytes: Uint8Array): ServerArtifact {
  const [meta, json, bin] = decodeFrames(bytes, 'queue server artifact');
  const m = parseJsonPart(meta, 'queue server artifact') as { params: HeParams; mode: 'seal' | 'simulate'; packing?: 'sample' | 'batch' };
  return { params: m.params, mode: m.mode, packing: m.packing ?? 'sample', program: decodeProgram(new TextDecoder().decode(json), Uint8Array.from(bin), 'queue server artifact') };
}

export function encodeEvaluationKeys(b: PublicBundle): Uint8Array {
  const parts = [jsonPart({ rotationSteps: b.rotationSteps, galois: !!b.galoisKeys }), b.publicKey, b.relinKeys];
  if (b.galoisKeys) parts.push(b.galoisKeys);
  return encodeFrames(parts);
}

export function decodeEvaluationKeys(bytes: Uint8Array, params: HeParams): PublicBundle {
  const [meta, publicKey, relinKeys, galoisKeys] = decodeFrames(bytes, 'queue evaluation keys');
  const m = parseJsonPart(meta, 'queue evaluation keys') as { rotationSteps: number[]; galois: boolean };
  const copy = (u: Uint8Array) => Uint8Array.from(u);
  return { params, publicKey: copy(publicKey), relinKeys: copy(relinKeys), galoisKeys: m.galois ? copy(galoisKeys) : null, rotationSteps: m.rotationSteps };
}

/** A shard's ciphertexts, sample by sample: a JSON part (`meta`, each sample's count), then all. */
export function encodeShard(meta: object, samples: Uint8Array[][]): Uint8Array {
  return encodeFrames([jsonPart({ meta, perSample: samples.map((s) => s.length) }), ...samples.flat()]);
}

export function decodeShard<M>(bytes: Uint8Array, what: string): { meta: M; samples: Uint8Array[][] } {
  const [head, ...cts] = decodeFrames(bytes, what);
  const { meta, perSample } = parseJsonPart(head, what) as { meta: M; perSample: number[] };
  const samples: Uint8Array[][] = [];
  let at = 0;
  for (const c of perSample) {
    samples.push(cts.slice(at, at + c).map((u) => Uint8Array.from(u)));
    at += c;
  }
  return { meta, samples };
}

/**
 * A shard at a segment boundary of a program cut for client refreshes: per sample, each
 * tensor's ciphertexts (a segment may start from several refreshed tensors, e.g. a residual
 * source beside the main path). The tensor ids and counts go in the JSON part.
 */
export function encodeTensorShard(meta: object, samples: SegmentTensors[]): Uint8Array {
  const layout = samples.map((s) => s.map((t) => [t.tensor, t.cts.length]));
  return encodeShard({ meta, layout }, samples.map((s) => s.flatMap((t) => t.cts)));
}

export function decodeTensorShard<M>(bytes: Uint8Array, what: string): { meta: M; samples: SegmentTensors[] } {
  const { meta, samples } = decodeShard<{ meta: M; layout: [number, number][][] }>(bytes, what);
  return {
    meta: meta.meta,
    samples: samples.map((cts, s) => {
      let at = 0;
      return meta.layout[s].map(([tensor, count]) => ({ tensor, cts: cts.slice(at, (at += count)) }));
    }),
  };
}
