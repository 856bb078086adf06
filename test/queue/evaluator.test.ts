import { expect } from 'chai';
import { Redis } from 'ioredis';
import { QueueEvaluator, HEClient, HepolyError, startQueueWorker, type QueueWorker } from '../../src/index.js';
import { compileProgram } from '../../src/he/compile.js';
import { programForward } from '../../src/he/reference.js';
import { packSample, planSample, unpackTensor } from '../../src/he/packing/sample.js';
import { TEST_PARAMS } from '../he/pipeline.js';
import { maxAbsDiff, randomInputs, randomWeights, tinyMlp } from '../he/fixtures.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';

/**
 * The library face a server uses to hand single requests to queue workers (what
 * `hepoly serve --queue` builds on): QueueEvaluator.run(keyId, keys, inputs). Two clients with
 * their own keys send interleaved requests; each decrypts its own answers to the program's
 * plaintext logits. Real SEAL: encrypt, evaluate on a worker, decrypt.
 */
describe('queue library: QueueEvaluator, one evaluation per job', function () {
  this.timeout(120_000);
  const g = tinyMlp();
  const program = compileProgram(g, randomWeights(g, 11));
  const per = g.inputShape.reduce((a, b) => a * b, 1);
  const x = randomInputs(g, 4, 11);
  let redis: TestRedis;
  let worker: QueueWorker;

  before(async () => {
    redis = await startRedis();
    worker = await startQueueWorker({ url: redis.url });
  });

  after(async () => {
    await worker?.close();
    await redis?.stop();
  });

  it('answers interleaved requests of two clients, each with its own keys uploaded once', async () => {
    const clients = [await HEClient.create(TEST_PARAMS), await HEClient.create(TEST_PARAMS)];
    const plan = planSample(program, clients[0].slots);
    const q = await QueueEvaluator.open({ url: redis.url, params: TEST_PARAMS, program });
    let keyCalls = 0;
    const keysOf = (c: HEClient) => () => {
      keyCalls++;
      return c.publicBundle(plan.rotationSteps);
    };
    try {
      const requests = [0, 1, 2, 3].map(async (s) => {
        const c = clients[s % 2];
        const xs = x.subarray(s * per, (s + 1) * per);
        const r = await q.run(`client-${s % 2}`, keysOf(c), c.encrypt(packSample(plan, program, xs)));
        const logits = unpackTensor(plan, program.output, r.outputs.map((b) => c.decrypt(b)));
        return { logits, plain: programForward(program, Float64Array.from(xs))[program.output], worker: r.worker };
      });
      const answers = await Promise.all(requests);
      for (const a of answers) expect(maxAbsDiff(a.logits.subarray(0, g.classes), a.plain.subarray(0, g.classes))).to.be.below(5e-3);
      expect(new Set(answers.map((a) => a.worker))).to.deep.equal(new Set([worker.id]));
      // each client's keys were asked for (and uploaded) once, not per request
      expect(keyCalls).to.equal(2);
      expect(q.inFlight).to.equal(0);
      expect(worker.jobsDone()).to.equal(4);
      // answered requests leave no input, result or job behind
      const r = new Redis(redis.url);
      try {
        expect(await r.keys('hepoly:run:*')).to.deep.equal([]);
      } finally {
        r.disconnect();
      }
    } finally {
      await q.close();
      for (const c of clients) c.delete();
    }
  });

  it('a request nobody answers fails after its timeout with a message naming the queue', async () => {
    const client = await HEClient.create(TEST_PARAMS);
    const plan = planSample(program, client.slots);
    await worker.close();
    const q = await QueueEvaluator.open({ url: redis.url, params: TEST_PARAMS, program, timeoutMs: 500 });
    try {
      const e = await q.run('c', () => client.publicBundle(plan.rotationSteps), client.encrypt(packSample(plan, program, x.subarray(0, per)))).catch((err: Error) => err);
      expect(e).to.be.instanceOf(HepolyError);
      expect((e as Error).message).to.match(/no worker answered within 500 ms \(are workers running on redis:\/\/127\.0\.0\.1:\d+\?\)/);
    } finally {
      await q.close();
      client.delete();
    }
  });
});
