import type { Graph, WeightMap } from '../models/graph.js';
import { compileProgram } from '../he/compile.js';
import type { HeProgram } from '../he/program.js';
import { weightedEntries } from '../he/linear-map.js';
import { planSample } from '../he/packing/sample.js';
import { size } from '../he/tensor-ops.js';

/**
 * What a network costs under encryption, counted from the compiled program (no encryption):
 * the ciphertexts one pass creates and the operations it runs. This is the figure pruning is
 * judged by: the validation report counts only the ciphertexts that cross the wire, which
 * pruning hidden units does not change.
 */
export interface HeCost {
  /** batch packing: one ciphertext per tensor element the server computes (input included) */
  batchCiphertexts: number;
  /** batch packing: scalar plaintext products (non-zero weights) per pass */
  batchPtMults: number;
  /** batch packing: ciphertext squares/products per pass */
  batchCtMults: number;
  /** sample packing at `slots`: ciphertexts over all tensors, plaintext diagonals, rotations */
  sampleCiphertexts: number | null;
  sampleDiagonals: number | null;
  sampleRotations: number | null;
}

export function heCost(graph: Graph, weights: WeightMap, slots: number | null = 4096): HeCost {
  const p = compileProgram(graph, weights);
  return { ...batchCost(p), ...sampleCost(p, slots) };
}

function batchCost(p: HeProgram): Pick<HeCost, 'batchCiphertexts' | 'batchPtMults' | 'batchCtMults'> {
  let cts = size(p.tensors[p.input].shape);
  let pt = 0;
  let ct = 0;
  for (const s of p.steps) {
    const n = size(p.tensors[s.out].shape);
    if (s.kind === 'linear') {
      cts += n;
      for (const t of s.terms) pt += weightedEntries(t.op).length;
    } else if (s.kind === 'power') {
      cts += n;
      ct += n;
    } else if (s.kind === 'dot') {
      cts += n;
      ct += s.pairs.out.length;
    } else if (s.op.kind === 'sumpool' || s.op.kind === 'globalsum') cts += n;
  }
  return { batchCiphertexts: cts, batchPtMults: pt, batchCtMults: ct };
}

function sampleCost(p: HeProgram, slots: number | null): Pick<HeCost, 'sampleCiphertexts' | 'sampleDiagonals' | 'sampleRotations'> {
  if (!slots) return { sampleCiphertexts: null, sampleDiagonals: null, sampleRotations: null };
  try {
    const plan = planSample(p, slots);
    return { sampleCiphertexts: plan.stats.ciphertexts, sampleDiagonals: plan.stats.diagonals, sampleRotations: plan.stats.rotations };
  } catch {
    // a program the sample packing does not support (e.g. too large for the slots)
    return { sampleCiphertexts: null, sampleDiagonals: null, sampleRotations: null };
  }
}
