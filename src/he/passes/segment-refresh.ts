import { HepolyError } from '../../util/errors.js';
import type { HeProgram, RefreshPoint, Step, TensorInfo } from '../program.js';
import { stepSources } from '../program.js';
import { type HeParams, RING_DEGREES, levelsOf, maxDepthAtRing, paramsAtRing } from '../params.js';
import type { ChainPass } from './chain.js';

/**
 * Segment for client refresh (`--refresh client`): a program deeper than the chosen chain is
 * cut into segments that each fit it, the ciphertexts still needed refreshed by the client at
 * each cut (src/he/refresh.ts runs the round trips). One pass for every model: MLP, CNN,
 * ResNet and transformer programs are all cut here. Without a refresh asked, or when the chain
 * holds the whole depth, the program goes on whole.
 */
export const segmentRefreshPass: ChainPass = {
  name: 'segment-refresh',
  run(state) {
    if (!state.params) throw new Error('internal: segment-refresh runs before choose-params');
    const levels = levelsOf(state.params);
    if (!state.refresh || state.refresh === 'none') return { state, note: 'no client refresh asked: one segment' };
    if (state.program.depth <= levels) return { state, note: `depth ${state.program.depth} fits the chain's ${levels} levels: one segment` };
    const program = segmentProgram(state.program, levels);
    const cuts = program.refreshes?.length ?? 0;
    return { state: { ...state, program }, note: `${cuts + 1} segments of at most ${levels} levels (${cuts} client refreshes per pass)` };
  },
};

/**
 * A `--params FILE` chain with `--refresh client`: the program as the segment-refresh pass
 * leaves it (cut where deeper than the chain, else the same object).
 */
export function cutToParams(program: HeProgram, params: HeParams, inputs: Float32Array, count: number): HeProgram {
  const state = { program, inputs, count, maxAbs: null, params, refresh: 'client' as const, candidates: null };
  return segmentRefreshPass.run(state).state.program;
}

/** One candidate of the ring search: the program cut for a ring, with the parameters that hold it. */
export interface RingCut {
  program: HeProgram;
  params: HeParams;
  /** the cut program's largest calibrated value */
  maxAbs: number;
}

export interface RingSearch {
  /** the uncut program's largest calibrated value (bounds the levels a ring holds) */
  maxAbs: number;
  /** the largest value a program computes on the calibration inputs (a cut changes it) */
  calibrate(program: HeProgram): number;
  minSlots?: number;
  minScaleBits?: number;
  /** how many levels fewer than a ring's most are tried when the consumer rejects a cut (default 0) */
  fallbackLevels?: number;
}

/**
 * `--params auto --refresh client`'s search, shared by he-validate and export: per ring, from
 * the smallest, the program cut to the most levels the ring holds, then (lazily, while the
 * consumer asks for more) to fewer. The consumer prices and checks the candidates.
 */
export function* ringCuts(compiled: HeProgram, search: RingSearch): Generator<{ N: number; cuts: Iterable<RingCut> }> {
  for (const N of RING_DEGREES) {
    if (search.minSlots && N / 2 < search.minSlots) continue;
    yield { N, cuts: cutsAtRing(compiled, N, search) };
  }
}

function* cutsAtRing(compiled: HeProgram, N: number, search: RingSearch): Generator<RingCut> {
  const most = Math.min(compiled.depth, maxDepthAtRing(N, search.maxAbs, search.minScaleBits));
  for (let levels = most; levels >= 1 && levels >= most - (search.fallbackLevels ?? 0); levels--) {
    let program: HeProgram;
    try {
      program = levels >= compiled.depth ? compiled : segmentProgram(compiled, levels);
    } catch (e) {
      // a step that needs more levels than this even from fresh ciphertexts: fewer cannot help
      if (e instanceof HepolyError) return;
      throw e;
    }
    const maxAbs = search.calibrate(program);
    const params = paramsAtRing(N, { depth: program.depth, maxAbs, minScaleBits: search.minScaleBits });
    if (params) yield { program, params, maxAbs };
  }
}

/**
 * Cuts `p` so no tensor is more than `levels` levels below a fresh encryption. Greedy: a cut
 * goes right before the first step that would overflow (moved back over struct steps, so only
 * tensors that own ciphertexts are refreshed), and every tensor still needed after it (the
 * residual sources too) is refreshed there, so all of a segment's inputs start at the top.
 * A needed tensor already at the top (the input, or one refreshed at an earlier cut and not
 * used since) is carried across on the server: a round trip would give it nothing.
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
      const carried = new Set<number>();
      for (const s of [...redo, ...p.steps.slice(i)]) {
        for (const o of stepSources(s)) {
          const cur = id(o);
          if (!defined.has(cur)) continue;
          if (tensors[cur].depth === 0) {
            carried.add(cur);
            continue;
          }
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
      refreshes.push(carried.size ? { before: cut, tensors: pairs, carried: [...carried] } : { before: cut, tensors: pairs });
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

/**
 * The program with every carried tensor sent through the client as well (a pair whose fresh
 * copy keeps the tensor's id): for a served model, whose sessions hold no ciphertexts between
 * rounds, so a restarted server can continue them.
 */
export function roundTripCarried(p: HeProgram): HeProgram {
  if (!p.refreshes?.some((r) => r.carried?.length)) return p;
  const refreshes = p.refreshes.map((r) => ({ before: r.before, tensors: [...r.tensors, ...(r.carried ?? []).map((t) => ({ src: t, out: t }))] }));
  return { ...p, refreshes };
}

function rewire(s: Step, id: (t: number) => number, tensors: TensorInfo[], stepDepth: (s: Step) => number): Step {
  const depth = stepDepth(s);
  tensors[s.out].depth = depth;
  if (s.kind === 'linear') return { ...s, terms: s.terms.map((t) => ({ ...t, src: id(t.src) })) };
  if (s.kind === 'power') return { ...s, a: id(s.a), b: id(s.b) };
  if (s.kind === 'dot') return { ...s, a: id(s.a), b: id(s.b), terms: s.terms.map((t) => ({ ...t, src: id(t.src) })) };
  return { ...s, src: id(s.src) };
}
