import type { Packing, PackingPlan } from '../he/packing/index.js';
import type { SlotLayout } from './artifact-format.js';

/**
 * The slot layout of one pass as the client artifact carries it, for any registered packing:
 * where element e of sample s goes (input) and where logit c of sample s is read (output),
 * with no program in the client. Read off the packing's own pack / unpack by feeding them
 * indices: packing is a placement of values (each input value copied into its slots, each
 * logit read from one slot), so packing the values 1..n shows every element's slots and
 * unpacking slot numbers shows every logit's slot. test/deploy/packings.test.ts checks the
 * result against pack / unpack on random values for every packing.
 */

export function passLayouts(packing: Packing, plan: PackingPlan, features: number, classes: number): { input: SlotLayout; output: SlotLayout } {
  const m = plan.samplesPerPass;
  const slots = plan.slots;
  const n = m * features;
  const vecs = packing.pack(plan, Float64Array.from({ length: n }, (_, i) => i + 1), m);
  const where: number[][] = Array.from({ length: n }, () => []);
  vecs.forEach((v, ct) => {
    for (let s = 0; s < v.length; s++) if (v[s] !== 0) where[v[s] - 1].push(ct * slots + s);
  });
  // a reduce, not Math.max(...): a batch pass of images has millions of elements
  const copies = where.reduce((m, w) => Math.max(m, w.length), 1);
  const input: SlotLayout = {
    shape: [m, features],
    ciphertexts: vecs.length,
    replicas: Array.from({ length: copies }, (_, r) => where.map((w) => w[r] ?? -1)),
  };
  const outCts = plan.sample ? plan.sample.layouts[plan.program.output]!.cts : classes;
  const numbered = Array.from({ length: outCts }, (_, ct) => Float64Array.from({ length: slots }, (_, s) => ct * slots + s + 1));
  const read = packing.unpack(plan, numbered, m);
  const output: SlotLayout = { shape: [m, classes], ciphertexts: outCts, replicas: [Array.from(read, (g) => (g > 0 ? g - 1 : -1))] };
  return { input, output };
}
