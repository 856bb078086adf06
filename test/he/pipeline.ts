import type { Graph, WeightMap } from '../../src/models/graph.js';
import { compileProgram } from '../../src/he/compile.js';
import { HEClient } from '../../src/he/client.js';
import { HEServer, type ServerOptions } from '../../src/he/server.js';
import type { HeParams } from '../../src/he/params.js';
import { packBatch, unpackBatch } from '../../src/he/packing/batch.js';
import { packSample, planSample, unpackTensor } from '../../src/he/packing/sample.js';

/** Small secure parameters for the tests: N=8192, 5 levels of 2^27. */
export const TEST_PARAMS: HeParams = { polyModulusDegree: 8192, coeffModulusBits: [40, 27, 27, 27, 27, 27, 40], scaleBits: 27 };

/**
 * The whole encrypted path, as a user runs it: the client generates keys and encrypts, the
 * server (worker threads, bytes only) evaluates, the client decrypts. Returns the logits.
 */
export async function encryptedLogits(
  g: Graph,
  w: WeightMap,
  x: Float32Array,
  count: number,
  packing: 'batch' | 'sample',
  params: HeParams = TEST_PARAMS,
  serverOptions: ServerOptions = {},
): Promise<{ logits: Float64Array; server: HEServer; client: HEClient }> {
  const p = compileProgram(g, w);
  const per = g.inputShape.reduce((a, b) => a * b, 1);
  const client = await HEClient.create(params);
  const logits = new Float64Array(count * g.classes);
  if (packing === 'batch') {
    const server = await HEServer.start(client.publicBundle([]), p, 'batch', { workers: 2, ...serverOptions });
    await closeOnError(server, client, async () => {
      const res = await server.evaluateBatch(client.encrypt(packBatch(x, per, 0, count, client.slots)));
      logits.set(unpackBatch(res.outputs.map((b) => (b ? client.decrypt(b) : null)), g.classes, count));
    });
    return { logits, server, client };
  }
  const plan = planSample(p, client.slots);
  const server = await HEServer.start(client.publicBundle(plan.rotationSteps), p, 'sample', { workers: 2, ...serverOptions });
  await closeOnError(server, client, async () => {
    const samples = Array.from({ length: count }, (_, s) => client.encrypt(packSample(plan, p, x.subarray(s * per, (s + 1) * per))));
    const res = await server.evaluateSamples(samples);
    res.outputs.forEach((o, s) => logits.set(unpackTensor(plan, p.output, o.map((b) => client.decrypt(b))), s * g.classes));
  });
  return { logits, server, client };
}

/** A failed evaluation must not leave worker threads that keep mocha from exiting. */
async function closeOnError(server: HEServer, client: HEClient, run: () => Promise<void>): Promise<void> {
  try {
    await run();
  } catch (e) {
    await server.close();
    client.delete();
    throw e;
  }
}
