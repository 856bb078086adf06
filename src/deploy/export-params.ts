import { calibrate } from '../he/validate.js';
import { type HeParams, checkParams, chooseParams, levelsOf, loadParamsFile } from '../he/params.js';
import type { HeProgram } from '../he/program.js';
import { cutToParams, ringCuts } from '../he/passes/segment-refresh.js';
import { WASM_HEAP_MAX, sampleCutFit } from '../he/tiles/cost.js';
import { HepolyError } from '../util/errors.js';
import { ciphertextBytes } from '../he/packing/batch.js';
import { programSegments } from '../he/refresh.js';
import { size } from '../he/tensor-ops.js';
import { foldTokens } from '../he/packing/token-fold.js';
import { GALOIS_KEY_BUDGET, galoisKeyBytes, normalizeSteps } from '../he/key-sizes.js';

/**
 * The program and CKKS parameters an export serves. Without `--refresh client` the whole
 * depth must fit one chain. With it, a program deeper than the chain is cut into segments
 * (src/he/refresh.ts) and the server hands the ciphertexts between two segments back to the
 * data owner, who decrypts and re-encrypts them (`POST /v1/sessions/:id/continue`). Each cut
 * is a network round trip per request, so `--params auto` takes the ring with the fewest
 * cuts (the smallest such ring: cheaper operations), never a cut program when one chain fits.
 */

export interface ExportChoice {
  program: HeProgram;
  params: HeParams;
  maxAbs: number;
  /** --params auto --refresh client: why this ring, and which larger ones were refused */
  why?: string;
}

export interface ExportRequirement {
  compiled: HeProgram;
  /** calibration inputs: held-out samples, flat */
  x: Float32Array;
  count: number;
  minSlots?: number;
  /** names the checkpoint in messages */
  source: string;
  /** the export's packing kind: a batch-packed cut needs no rotations, so only sample packing's keys and heap are checked per ring */
  packing?: string;
}


export function chooseExportProgram(spec: string | undefined, refresh: 'none' | 'client', req: ExportRequirement): ExportChoice {
  const { compiled, x, count } = req;
  const maxAbs0 = calibrate(compiled, x, count);
  if (spec && spec !== 'auto') {
    const params = loadParamsFile(spec);
    let program = compiled;
    let maxAbs = maxAbs0;
    if (refresh === 'client' && levelsOf(params) >= 1) {
      program = cutToParams(compiled, params, x, count);
      if (program !== compiled) maxAbs = calibrate(program, x, count);
    }
    checkParams(params, { depth: program.depth, maxAbs }, spec);
    return { program, params, maxAbs };
  }
  try {
    return { program: compiled, params: chooseParams({ depth: compiled.depth, maxAbs: maxAbs0, minSlots: req.minSlots }), maxAbs: maxAbs0 };
  } catch (e) {
    if (!(e instanceof HepolyError)) throw e;
    if (refresh !== 'client') {
      throw new HepolyError(
        `${req.source}: depth ${compiled.depth} does not fit one CKKS chain. Export with --refresh client (the data owner re-encrypts between segments: one round trip per cut and request, counted by the server), ` +
          'or export a shallower model (fewer activation layers), or pass --params FILE with a chain that holds the depth',
      );
    }
  }
  return cheapestCut(req, maxAbs0);
}

/**
 * Over every ring: the program cut to the most levels it holds (or up to 2 fewer, where the
 * values need a larger q0 than the most levels leave room for, as he-validate's search does);
 * the fewest cuts win, then the smaller ring.
 */
function cheapestCut(req: ExportRequirement, maxAbs0: number): ExportChoice {
  const { compiled, x, count } = req;
  let best: (ExportChoice & { cuts: number; N: number }) | null = null;
  const tooBig = new Set<string>();
  for (const { N, cuts } of ringCuts(compiled, { maxAbs: maxAbs0, calibrate: (p) => calibrate(p, x, count), minSlots: req.minSlots, fallbackLevels: 2 })) {
    for (const { program, params, maxAbs } of cuts) {
      if (req.packing === 'token') {
        const fold = foldTokens(program, N / 2);
        if (galoisKeyBytes(params, normalizeSteps(fold.rotationSteps, N / 2).length) > GALOIS_KEY_BUDGET || batchSegmentBytes(fold.program, params) > WASM_HEAP_MAX / 2) {
          tooBig.add(`N=${N}`);
          continue;
        }
      } else if (req.packing === 'batch') {
        if (batchSegmentBytes(program, params) > WASM_HEAP_MAX / 2) {
          tooBig.add(`N=${N}`);
          continue;
        }
      } else {
        const fit = sampleCutFit(program, params);
        if ('refused' in fit) {
          if (fit.refused === 'heap') tooBig.add(`N=${N}`);
          continue;
        }
      }
      const n = program.refreshes?.length ?? 0;
      if (!best || n < best.cuts) best = { program, params, maxAbs, cuts: n, N };
      // the most levels that fit this ring: fewer would only cut more
      break;
    }
  }
  if (!best) {
    throw new HepolyError(
      `${req.source}: --refresh client: no ring holds this network even cut into segments (depth ${req.compiled.depth})${tooBig.size ? `; ${[...tooBig].join(', ')} would need more than a worker's 4 GiB SEAL heap` : ''}. Export a shallower model or pass --params FILE`,
    );
  }
  const heapWhy =
    req.packing === 'batch'
      ? "a segment's input and output ciphertexts would pass half a worker's 4 GiB SEAL heap"
      : req.packing === 'token'
        ? "the Galois keys, or a segment's input and output ciphertexts, would not fit a worker's 4 GiB SEAL heap"
        : "a worker's 4 GiB SEAL heap would not hold the keys and diagonals";
  const refused = tooBig.size ? `; ${[...tooBig].join(', ')}: ${heapWhy}` : '';
  const why = `N=${best.N}, the fewest round trips (${best.cuts} per request) among the rings that fit${refused}`;
  return { program: best.program, params: best.params, maxAbs: best.maxAbs, why };
}

/**
 * Batch packing: a worker holds a segment's fresh input ciphertexts (one per element) and the
 * ones it hands back at once; the largest segment's, at the top level. Half the wasm heap is
 * left for the stage's own products.
 */
function batchSegmentBytes(p: HeProgram, params: HeParams): number {
  const count = (ts: number[]) => ts.reduce((a, t) => a + size(p.tensors[t].shape), 0);
  const top = ciphertextBytes(params.polyModulusDegree, levelsOf(params));
  return Math.max(...programSegments(p).map((seg) => (count(seg.inputs) + count(seg.outputs)) * top));
}
