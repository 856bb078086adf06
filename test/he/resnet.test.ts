import { expect } from 'chai';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Graph, WeightMap } from '../../src/models/graph.js';
import { buildResnet } from '../../src/models/resnet.js';
import { initBackend } from '../../src/train/backend.js';
import { loadRecipe } from '../../src/recipe/load.js';
import { train } from '../../src/train/loop.js';
import { compileProgram } from '../../src/he/compile.js';
import { programForward } from '../../src/he/reference.js';
import { programSegments, refreshCiphertexts, segmentProgram } from '../../src/he/refresh.js';
import { HEClient } from '../../src/he/client.js';
import { HEServer } from '../../src/he/server.js';
import { SampleEvaluator, packSample, planSample, unpackTensor } from '../../src/he/packing/sample.js';
import { SimBackend } from '../../src/he/sim-backend.js';
import { validate, reportJson } from '../../src/he/validate.js';
import { reportMarkdown } from '../../src/he/report.js';
import { HepolyError } from '../../src/util/errors.js';
import { refreshedSampleMemory } from '../../src/he/tiles/cost.js';
import { dryBackend } from '../../src/he/tiles/dry-run.js';
import { RING_DEGREES, levelsOf, maxDepthAtRing, paramsAtRing } from '../../src/he/params.js';
import { ringCuts, roundTripCarried } from '../../src/he/passes/segment-refresh.js';
import type { HeProgram } from '../../src/he/program.js';
import { TEST_PARAMS } from './pipeline.js';
import { argmaxRows, maxAbsDiff, plaintextLogits, randomInputs, randomWeights } from './fixtures.js';
import { tempDir } from '../helpers/tmp.js';
import type { ToWorker } from '../../src/he/protocol.js';
import { SecretKeyDetector, byteStringsOf, clientSecretKey } from '../helpers/secret-scan.js';
import { restoreFastestBackend } from '../helpers/backend.js';

type Skip = 'standard' | 'dirac' | 'shared-source';

/** A ResNet as the recipe builds it, shrunk: 6x6 input padded to 8, widths [2, 2, 4]. */
function tinyResnet(skip: Skip, depth = 8): { graph: Graph; weights: WeightMap } {
  const graph = buildResnet({ kind: 'resnet', depth, widths: [2, 2, 4], skip, post_add_bn: true, pad_to: 8, activation: { kind: 'quad' } }, [6, 6, 1], 3);
  const weights = randomWeights(graph, 11);
  // a visible identity share, so a missed Dirac fold changes the logits
  for (const [k, t] of weights) if (k.endsWith('/alpha')) t.data.fill(0.8);
  return { graph, weights };
}

function maxAbs(v: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < v.length; i++) m = Math.max(m, Math.abs(v[i]));
  return m;
}

/** Client encrypts, server (worker threads, bytes only) evaluates segment by segment, client refreshes and decrypts. */
async function encryptedWithRefresh(g: Graph, w: WeightMap, x: Float32Array, count: number, levels = TEST_PARAMS.coeffModulusBits.length - 2) {
  const program = segmentProgram(compileProgram(g, w), levels);
  const per = g.inputShape.reduce((a, b) => a * b, 1);
  const client = await HEClient.create(TEST_PARAMS);
  const plan = planSample(program, client.slots);
  // what reached the worker, copied back by its tap (see separation.test.ts)
  const messages: ToWorker[] = [];
  const server = await HEServer.start(client.publicBundle(plan.rotationSteps), program, 'sample', { workers: 1, tap: (m) => messages.push(m) });
  const sent: string[] = [];
  try {
    const samples = Array.from({ length: count }, (_, s) => client.encrypt(packSample(plan, program, x.subarray(s * per, (s + 1) * per))));
    const res = await server.evaluateSamples(samples, false, (label, cts) => {
      sent.push(label);
      return refreshCiphertexts(client, cts);
    });
    const logits = new Float64Array(count * g.classes);
    res.outputs.forEach((o, s) => logits.set(unpackTensor(plan, program.output, o.map((b) => client.decrypt(b))), s * g.classes));
    await server.tapDrained();
    const detector = await SecretKeyDetector.create(await clientSecretKey(client, new URL('../../src/', import.meta.url).href));
    const secretsSent = detector.findings(messages.flatMap((m, i) => byteStringsOf(m, `message ${i} (${m.type})`)));
    return { logits, program, server, sent, messages, secretsSent };
  } finally {
    await server.close();
    client.delete();
  }
}

describe('he/resnet: residual networks under encryption and --refresh client', function () {
  // tests here force the cpu backend; later files in this mocha worker get the fastest back
  after(restoreFastestBackend);
  this.timeout(300000);
  const tmp = tempDir('hepoly-resnet-');
  before(async () => {
    await initBackend('cpu');
  });
  after(() => tmp.cleanup());

  it('cuts a program deeper than the chain into segments that fit, refreshing every tensor still needed', () => {
    const { graph, weights } = tinyResnet('shared-source', 14);
    const full = compileProgram(graph, weights);
    expect(full.depth).to.be.above(5);
    const cut = segmentProgram(full, 5);
    expect(cut.depth).to.be.at.most(5);
    expect(cut.refreshes!.length).to.be.at.least(Math.ceil(full.depth / 5) - 1);
    // shared-source: the stage's source crosses a cut next to the block's own value
    expect(cut.refreshes!.some((r) => r.tensors.length > 1)).to.equal(true);
    const segs = programSegments(cut);
    expect(segs.length).to.equal(cut.refreshes!.length + 1);
    expect(segs[segs.length - 1].to).to.equal(cut.steps.length);
    const x = Float64Array.from(randomInputs(graph, 1, 5));
    expect(maxAbsDiff(programForward(cut, x)[cut.output], programForward(full, x)[full.output])).to.be.below(1e-9);
  });

  it('carries a tensor already at the top level across a cut instead of sending it to the client again', () => {
    const { graph, weights } = tinyResnet('standard', 14);
    const full = compileProgram(graph, weights);
    const cut = segmentProgram(full, 1);
    // a round trip is only for a tensor below the top: it gets its levels back
    for (const r of cut.refreshes!) for (const { src } of r.tensors) expect(cut.tensors[src].depth).to.be.above(0);
    // a block's input waits at the top for its residual add while its convolutions are cut
    const carried = cut.refreshes!.flatMap((r) => r.carried ?? []);
    expect(carried.length).to.be.above(0);
    for (const t of carried) expect(cut.tensors[t].depth).to.equal(0);
    const segs = programSegments(cut);
    cut.refreshes!.forEach((r, j) => {
      for (const t of r.carried ?? []) {
        expect(segs[j].outputs).to.include(t);
        expect(segs[j + 1].inputs).to.include(t);
      }
    });
    const x = Float64Array.from(randomInputs(graph, 1, 5));
    expect(maxAbsDiff(programForward(cut, x)[cut.output], programForward(full, x)[full.output])).to.be.below(1e-9);
    // a served model sends them through the client too (its sessions hold no ciphertexts)
    const served = roundTripCarried(cut);
    expect(served.refreshes!.every((r) => !r.carried?.length)).to.equal(true);
    const pairs = (p: HeProgram) => p.refreshes!.reduce((a, r) => a + r.tensors.length, 0);
    expect(pairs(served)).to.equal(pairs(cut) + carried.length);
    expect(maxAbsDiff(programForward(served, x)[served.output], programForward(full, x)[full.output])).to.be.below(1e-9);
  });

  it('the ring search (he-validate and export share it): per ring, cuts that fit its parameters, fewer levels only when asked for more', () => {
    const { graph, weights } = tinyResnet('standard', 14);
    const full = compileProgram(graph, weights);
    const calibrated: number[] = [];
    const search = { maxAbs: 10, calibrate: (p: HeProgram) => (calibrated.push(p.depth), 10), fallbackLevels: 2 };
    const rings = [...ringCuts(full, search)];
    expect(rings.map((r) => r.N)).to.deep.equal([...RING_DEGREES]);
    // lazy: nothing is cut or calibrated before a ring's candidates are read
    expect(calibrated).to.deep.equal([]);
    let usable = 0;
    for (const { N, cuts } of rings) {
      const all = [...cuts];
      // the smallest rings hold no level at this scale: no candidate
      if (maxDepthAtRing(N, 10) < 1) expect(all).to.deep.equal([]);
      else expect(all.length).to.be.within(1, 3);
      if (all.length) usable++;
      for (const c of all) {
        expect(c.params.polyModulusDegree).to.equal(N);
        expect(c.program.depth).to.be.at.most(levelsOf(c.params));
        if (c.program !== full) expect(c.program.refreshes!.length).to.be.above(0);
      }
      // each candidate after the first has no more levels per segment, so at least as many cuts
      for (let i = 1; i < all.length; i++) {
        expect(all[i].program.depth).to.be.at.most(all[i - 1].program.depth);
        expect(all[i].program.refreshes?.length ?? 0).to.be.at.least(all[i - 1].program.refreshes?.length ?? 0);
      }
    }
    expect(usable).to.be.at.least(3);
    expect(calibrated.length).to.be.at.least(usable);
    const minSlots = [...ringCuts(full, { ...search, minSlots: 8192 })].map((r) => r.N);
    expect(minSlots).to.deep.equal(RING_DEGREES.filter((N) => N / 2 >= 8192));
  });

  it('prices the SEAL heap of a refreshed run segment by segment (what --params auto checks against the 4 GiB cap)', () => {
    const { graph, weights } = tinyResnet('standard', 14);
    const full = compileProgram(graph, weights);
    const heap = (N: number, levels: number) => {
      const cut = segmentProgram(full, levels);
      const params = paramsAtRing(N, { depth: cut.depth, maxAbs: 10 })!;
      return refreshedSampleMemory(cut, planSample(cut, N / 2), params);
    };
    const m8 = heap(8192, 3);
    const m16 = heap(16384, 3);
    expect(m8).to.be.above(0);
    // twice the ring: twice every ciphertext, plaintext and key
    expect(m16 / m8).to.be.within(1.6, 2.4);
    // more levels per segment: bigger ciphertexts and keys
    expect(heap(8192, 5)).to.be.above(m8);
  });

  it('a standard ResNet deeper than N=8192 allows: refreshed by the client, it agrees with plaintext (encrypt, evaluate on ciphertexts only, decrypt)', async () => {
    const { graph, weights } = tinyResnet('standard');
    const x = randomInputs(graph, 3, 21, 0, 1);
    const plain = plaintextLogits(graph, weights, x, 3);
    // 2 levels a segment (of the chain's 5): some block input waits at the top across a cut
    const r = await encryptedWithRefresh(graph, weights, x, 3, 2);
    expect(compileProgram(graph, weights).depth).to.be.above(5);
    expect(r.program.refreshes!.length).to.be.at.least(2);
    expect(r.server.refreshes.length).to.equal(r.program.refreshes!.length);
    expect(r.sent.length).to.equal(3 * r.server.refreshes.reduce((a, p) => a + p.tensors.length, 0));
    // and stays on the server: the client never sees it again
    expect(r.program.refreshes!.some((p) => (p.carried ?? []).length > 0)).to.equal(true);
    expect(argmaxRows(r.logits, 3)).to.deep.equal(argmaxRows(plain, 3));
    expect(maxAbsDiff(r.logits, plain)).to.be.below(1e-2);
    // the worker was handed ciphertexts (refreshed ones in the later segments) and public material only
    expect(r.messages.filter((m) => m.type === 'segment').length).to.equal(3 * (r.program.refreshes!.length + 1));
    expect(r.secretsSent).to.deep.equal([]);
  });

  it('a ResNet whose channels outgrow a ciphertext multiplexes them after each stride (4, then 16 per cell) and agrees with plaintext under encryption', async () => {
    // 28x28 padded to 32: 4 channel planes per ciphertext at N=8192, so stage 2's 8 channels and
    // stage 3's 32 only fit by filling the gaps the strides leave
    const graph = buildResnet({ kind: 'resnet', depth: 8, widths: [4, 8, 32], skip: 'standard', post_add_bn: true, pad_to: 32, activation: { kind: 'quad' } }, [28, 28, 1], 3);
    const weights = randomWeights(graph, 12);
    const x = randomInputs(graph, 2, 23, 0, 1);
    const plain = plaintextLogits(graph, weights, x, 2);
    const r = await encryptedWithRefresh(graph, weights, x, 2);
    const plan = planSample(r.program, TEST_PARAMS.polyModulusDegree / 2);
    const subs = new Set(plan.layouts.map((l) => l?.plane?.subs?.length ?? 1));
    expect([...subs].sort((a, b) => a - b)).to.deep.equal([1, 4, 16]);
    for (const l of plan.layouts) {
      if (!l?.plane?.subs) continue;
      // every channel of every pixel in a slot of its own, one ciphertext for each stage
      const slots = l.replicas[0].filter((g) => g >= 0);
      expect(new Set(slots).size).to.equal(slots.length);
      expect(l.cts).to.equal(1);
    }
    expect(argmaxRows(r.logits, 2)).to.deep.equal(argmaxRows(plain, 2));
    expect(maxAbsDiff(r.logits, plain)).to.be.below(1e-2 * Math.max(1, maxAbs(plain)));
  });

  it('on an odd-sized grid (28 -> 14 -> 7 -> 4) a multiplexed layout that would put two channels in one slot is not taken: one slot per element, and the pass equals the float64 reference', () => {
    // at 7 -> 4 the last column (3 x 8) plus a 16-way cell's column offset (up to 7) passes the
    // 28-wide base row: 16 sub-positions would collide, so the stride keeps 4
    const graph = buildResnet({ kind: 'resnet', depth: 8, widths: [4, 8, 16, 64], skip: 'standard', post_add_bn: true, activation: { kind: 'quad' } }, [28, 28, 1], 3);
    const program = compileProgram(graph, randomWeights(graph, 3));
    const plan = planSample(program, 4096);
    for (const l of plan.layouts) {
      if (!l?.plane) continue;
      const slots = l.replicas[0].filter((g) => g >= 0);
      expect(new Set(slots).size, `${l.shape.join('x')} one slot per element`).to.equal(slots.length);
    }
    const last = plan.layouts.find((l) => l?.plane && l.shape[0] === 4)!;
    expect(last.plane!.subs!.length).to.equal(4);
    const be = new SimBackend({ polyModulusDegree: 8192, coeffModulusBits: [60, ...Array(program.depth).fill(40), 60], scaleBits: 40 }, { noise: false });
    const x = randomInputs(graph, 1, 5, 0, 1);
    const outs = new SampleEvaluator(program, plan, be).run(packSample(plan, program, x).map((v) => be.encryptInput(v)));
    const got = unpackTensor(plan, program.output, outs.map((c) => c.v));
    expect(maxAbsDiff(got, programForward(program, Float64Array.from(x))[program.output])).to.be.below(1e-6);
  });

  it("keeps a cut program's residue diagonals encoded across passes up to its budget: a server taking request after request encodes them once", () => {
    const { graph, weights } = tinyResnet('standard');
    const program = segmentProgram(compileProgram(graph, weights), 2);
    const plan = planSample(program, TEST_PARAMS.polyModulusDegree / 2);
    const encodesPerPass = (keptDiagonalBytes: number) => {
      const { be, dry } = dryBackend(TEST_PARAMS);
      const ev = new SampleEvaluator(program, plan, be, { keptDiagonalBytes });
      const encodes = () => dry.tally.ops.encode.reduce((a, b) => a + b, 0);
      const pass = () => {
        const before = encodes();
        for (const seg of programSegments(program)) {
          const given = new Map(seg.inputs.map((t) => [t, Array.from({ length: plan.layouts[t]!.cts }, () => dry.input())]));
          for (const cts of [...ev.runRange(given, seg.from, seg.to, seg.outputs).values(), ...given.values()]) for (const c of cts) be.free(c);
        }
        return encodes() - before;
      };
      return [pass(), pass()];
    };
    const [first, again] = encodesPerPass(0);
    expect(first).to.be.above(0);
    expect(again, 'nothing kept: every segment encoded again').to.equal(first);
    const [firstAll, none] = encodesPerPass(Infinity);
    expect(firstAll).to.equal(first);
    expect(none, 'all kept: the second pass encodes nothing').to.equal(0);
    const [, some] = encodesPerPass(2 ** 20);
    expect(some).to.be.above(0).and.below(first);
  });

  for (const skip of ['dirac', 'shared-source'] as const) {
    it(`a ${skip} ResNet agrees with plaintext under encryption`, async () => {
      const { graph, weights } = tinyResnet(skip, skip === 'shared-source' ? 14 : 8);
      // two samples: the standard ResNet above runs three through the same refresh protocol
      const x = randomInputs(graph, 2, 22, 0, 1);
      const plain = plaintextLogits(graph, weights, x, 2);
      const r = await encryptedWithRefresh(graph, weights, x, 2);
      expect(argmaxRows(r.logits, 2)).to.deep.equal(argmaxRows(plain, 2));
      expect(maxAbsDiff(r.logits, plain)).to.be.below(1e-2);
    });
  }

  it('he-validate refuses a too-deep ResNet without --refresh client, naming depth needed vs available and both options; with it, reports the refreshes', async () => {
    const recipe = join(tmp.path, 'tiny-resnet.yaml');
    writeFileSync(
      recipe,
      [
        'name: tiny-resnet',
        `extends: ${join(process.cwd(), 'recipes/fmnist-base.yaml')}`,
        'model: {kind: resnet, depth: 8, widths: [2, 2, 4], skip: standard, pad_to: 32, activation: {kind: quad}}',
        'data: {limit: 64, test_limit: 8, split: {validation: 0.01}}',
        'train: {epochs: 1, batch: 32}',
      ].join('\n'),
    );
    const { recipe: r } = loadRecipe(recipe, []);
    const ckpt = join(tmp.path, 'ckpt');
    await train({ recipe: r, recipeFile: recipe, outDir: ckpt, callbacks: {} });
    const params = join(tmp.path, 'params.json');
    writeFileSync(params, JSON.stringify({ poly_modulus_degree: 8192, coeff_modulus_bits: [40, 27, 27, 27, 27, 27, 40], scale_bits: 27 }));
    try {
      await validate({ checkpoint: ckpt, samples: 3, params, workers: 2 });
      expect.fail('expected a refusal');
    } catch (e) {
      expect(e).to.be.instanceOf(HepolyError);
      expect((e as Error).message).to.match(/needs depth 15 but these 7 primes give 5 levels.*--refresh client.*shallower model/);
    }
    const rep = await validate({ checkpoint: ckpt, samples: 3, params, workers: 2, mode: 'simulate', refresh: 'client' });
    expect(rep.agreement).to.equal(1);
    expect(rep.depth).to.equal(15);
    expect(rep.refreshes!.perPass).to.equal(2);
    expect(rep.refreshes!.total).to.equal(6);
    expect(rep.refreshes!.points[0].bytesToClient).to.be.above(0);
    expect(reportMarkdown(rep)).to.include('## Interactive steps (--refresh client)');
    const json = reportJson(rep) as { refreshes: { per_pass: number; points: { before: string }[] } };
    expect(json.refreshes.per_pass).to.equal(2);
    expect(json.refreshes.points[0].before).to.be.a('string');
  });
});
