import { expect } from 'chai';
import { createHash } from 'node:crypto';
import type { Graph, WeightMap } from '../../src/models/graph.js';
import { buildResnet } from '../../src/models/resnet.js';
import { initBackend } from '../../src/train/backend.js';
import { compileProgram } from '../../src/he/compile.js';
import { refreshCiphertexts, segmentProgram } from '../../src/he/refresh.js';
import { HEClient } from '../../src/he/client.js';
import { HEServer } from '../../src/he/server.js';
import { packSample, planSample, unpackTensor } from '../../src/he/packing/sample.js';
import { PortTeam, teamInits } from '../../src/he/team.js';
import type { HeProgram } from '../../src/he/program.js';
import type { ToWorker } from '../../src/he/protocol.js';
import { TEST_PARAMS } from './pipeline.js';
import { argmaxRows, maxAbsDiff, plaintextLogits, randomInputs, randomWeights } from './fixtures.js';
import { SecretKeyDetector, byteStringsOf, clientSecretKey } from '../helpers/secret-scan.js';
import { restoreFastestBackend } from '../helpers/backend.js';
import { HepolyError } from '../../src/util/errors.js';

/** 28x28 padded to 32, channels multiplexed after each stride: several babies and giant steps per convolution. */
function resnet(): { graph: Graph; weights: WeightMap } {
  const graph = buildResnet({ kind: 'resnet', depth: 8, widths: [4, 8, 32], skip: 'standard', post_add_bn: true, pad_to: 32, activation: { kind: 'quad' } }, [28, 28, 1], 3);
  return { graph, weights: randomWeights(graph, 12) };
}

const digest = (cts: Uint8Array[]) => createHash('sha256').update(Buffer.concat(cts)).digest('hex');

/**
 * One client, two servers: `workers` threads in teams of `perSample`. Refreshes are memoized
 * by the bytes sent, so when both servers send the same ciphertexts they get the same fresh
 * ones back, and their results can be compared byte for byte.
 */
async function passes(program: HeProgram, graph: Graph, x: Float32Array, count: number, configs: { workers: number; perSample: number }[]) {
  const per = graph.inputShape.reduce((a, b) => a * b, 1);
  const client = await HEClient.create(TEST_PARAMS);
  const plan = planSample(program, client.slots);
  const memo = new Map<string, Uint8Array[]>();
  const refresh = (_label: string, cts: Uint8Array[]) => {
    const key = digest(cts);
    if (!memo.has(key)) memo.set(key, refreshCiphertexts(client, cts));
    return memo.get(key)!;
  };
  try {
    const samples = Array.from({ length: count }, (_, s) => client.encrypt(packSample(plan, program, x.subarray(s * per, (s + 1) * per))));
    // one key set for both servers: key switching with other keys gives other (equally valid) bytes
    const bundle = client.publicBundle(plan.rotationSteps);
    const runs = [];
    for (const { workers, perSample } of configs) {
      const messages: ToWorker[] = [];
      const server = await HEServer.start(bundle, program, 'sample', { workers, workersPerSample: perSample, tap: (m) => messages.push(m) });
      try {
        const res = await server.evaluateSamples(samples, false, refresh);
        const logits = new Float64Array(count * graph.classes);
        res.outputs.forEach((o, s) => logits.set(unpackTensor(plan, program.output, o.map((b) => client.decrypt(b))), s * graph.classes));
        await server.tapDrained();
        const detector = await SecretKeyDetector.create(await clientSecretKey(client, new URL('../../src/', import.meta.url).href));
        const secretsSent = detector.findings(messages.flatMap((m, i) => byteStringsOf(m, `message ${i} (${m.type})`)));
        runs.push({ outputs: res.outputs.map(digest), logits, counts: server.counts, secretsSent });
      } finally {
        await server.close();
      }
    }
    return runs;
  } finally {
    client.delete();
  }
}

describe('he/team: one sample evaluated by several worker threads (--workers-per-sample)', function () {
  after(restoreFastestBackend);
  this.timeout(600000);
  before(async () => {
    await initBackend('cpu');
  });

  it('a team of 2 (and of 3) splits the rotations and plaintext products between its threads and returns the bytes one thread returns, through client refreshes, agreeing with plaintext', async () => {
    const { graph, weights } = resnet();
    const program = segmentProgram(compileProgram(graph, weights), TEST_PARAMS.coeffModulusBits.length - 2);
    expect(program.refreshes!.length).to.be.above(0);
    const x = randomInputs(graph, 1, 23, 0, 1);
    const [one, team, three] = await passes(program, graph, x, 1, [
      { workers: 1, perSample: 1 },
      { workers: 2, perSample: 2 },
      // three threads: each member's doorbell rung by two peers
      { workers: 3, perSample: 3 },
    ]);
    // exact sums: the team's result is the single thread's, ciphertext byte for ciphertext byte
    expect(team.outputs).to.deep.equal(one.outputs);
    expect(three.outputs).to.deep.equal(one.outputs);
    expect(three.counts.ptMults).to.equal(one.counts.ptMults);
    // each baby and giant rotation done once in the team, not once per thread; every product too.
    // Pooling's and the dense fold's rotations, and the squares, are done by every member
    const plan = planSample(program, TEST_PARAMS.polyModulusDegree / 2);
    let shared = 0;
    for (const st of plan.steps) {
      const out = plan.layouts[program.steps[st.step].out];
      if (st.kind === 'linear') shared += st.fold.length * out!.cts;
      if (st.kind === 'rotsum') shared += st.passes.flat().length * plan.layouts[(program.steps[st.step] as { src: number }).src]!.cts;
    }
    expect(team.counts.ptMults).to.equal(one.counts.ptMults);
    // one sample; the second member repeats the shared ones, the third member twice over
    expect(team.counts.rotations).to.equal(one.counts.rotations + shared);
    expect(three.counts.rotations).to.equal(one.counts.rotations + 2 * shared);
    expect(team.counts.ctCtMults).to.equal(2 * one.counts.ctCtMults);
    const plain = plaintextLogits(graph, weights, x, 1);
    expect(argmaxRows(team.logits, 1)).to.deep.equal(argmaxRows(plain, 1));
    expect(maxAbsDiff(team.logits, plain)).to.be.below(1e-2 * Math.max(1, ...Array.from(plain, Math.abs)));
    // the threads were given public material and ciphertexts only
    expect(team.secretsSent).to.deep.equal([]);
  });

  it('refuses a team size that does not divide the workers, or batch packing, naming the flag', async () => {
    const { graph, weights } = resnet();
    const program = compileProgram(graph, weights);
    const client = await HEClient.create(TEST_PARAMS);
    try {
      const bundle = client.publicBundle([]);
      const err = async (f: () => Promise<unknown>) => f().then(() => null, (e: unknown) => e);
      const odd = await err(() => HEServer.start(bundle, program, 'sample', { workers: 2, workersPerSample: 3 }));
      expect(odd).to.be.instanceOf(HepolyError);
      expect((odd as Error).message).to.match(/--workers-per-sample 3 does not divide --workers 2/);
      const batch = await err(() => HEServer.start(bundle, program, 'batch', { workers: 2, workersPerSample: 2 }));
      expect((batch as Error).message).to.match(/--workers-per-sample 2: only sample packing/);
    } finally {
      client.delete();
    }
  });

  it("a member stops waiting when its peer fails (the peer's abort), drops a failed request's leftovers, and gives up on a silent peer", () => {
    const codec = { serialize: (c: Uint8Array) => c.slice(), deserialize: (b: Uint8Array) => b };
    const [a, b] = teamInits(2).map((init) => new PortTeam(init, codec, 200));
    try {
      a.abort('out of memory');
      expect(() => b.exchange('step 1', [[], []])).to.throw(/team member 0 failed: out of memory/);
      // request 1: a is silent, b gives up after its timeout; its message stays in a's port
      a.begin(1);
      b.begin(1);
      expect(() => b.exchange('step 1', [[{ key: 7, c: Uint8Array.of(1) }], []])).to.throw(/team member 0 sent nothing for 0 s/);
      // request 2: neither leftover (b's of request 0 and 1) is taken for one of this request
      a.begin(2);
      b.begin(2);
      b.send('step 1', [[{ key: 3, c: Uint8Array.of(9, 9) }], []]);
      const got = a.exchange('step 1', [[], [{ key: 5, c: Uint8Array.of(4) }]]);
      expect(got.map((g) => [g.key, [...g.c]])).to.deep.equal([[3, [9, 9]]]);
      expect(b.collect('step 1').map((g) => [g.key, [...g.c]])).to.deep.equal([[5, [4]]]);
      // members that disagree on the step fail loudly instead of mixing sums
      b.send('step 2', [[], []]);
      expect(() => a.exchange('step 3', [[], []])).to.throw(/internal: team member 1 sent "step 2" while member 0 waited for "step 3"/);
    } finally {
      for (const init of [a, b]) for (const p of (init as unknown as { init: { ports: ({ close(): void } | null)[] } }).init.ports) p?.close();
    }
  });
});
