import type { CoordinatorClient } from './client.js';
import type { AggregationCrypto } from './ckks-aggregate.js';
import { dequantize, dequantizeWide, quantize, quantizeWide } from './fixed-point.js';
import { applyPairwiseMasks, type Peer } from './masks.js';
import type { PartyIdentity } from './identity.js';
import { bytesU32, u32Bytes } from './wire.js';

/**
 * One secure sum, the primitive every federated round is built from: the party quantizes its
 * vector to Z_2^32, adds its pairwise masks (when secure aggregation is on), encrypts it under
 * the shared CKKS key (when aggregation is he), submits, and waits for the sum. When the
 * coordinator reports a dropped participant the sum is redone among the rest, with masks drawn
 * for the new attempt (the old attempt's masks are never reused).
 */
export interface SecureSumContext {
  client: CoordinatorClient;
  me: string;
  identity: PartyIdentity;
  peers: Peer[];
  /** null: plain aggregation (the coordinator sees the masked vector, or the vector itself) */
  crypto: AggregationCrypto | null;
  masks: boolean;
}

export interface SumOptions {
  /** who contributes (default: every live party) */
  members?: string[];
  /** who may read the sum (default: anyone joined) */
  audience?: string[];
  /** wide fixed point (two limbs per value) for sums beyond +-32768 */
  wide?: boolean;
}

/** Contributes `contribution` to aggregation `id` and returns the sum (null when this party only contributes and is not in the audience). */
export async function secureSum(
  ctx: SecureSumContext,
  id: string,
  contribution: ArrayLike<number> | ((participants: string[]) => ArrayLike<number>),
  opts: SumOptions = {},
): Promise<Float64Array | null> {
  const mode = ctx.crypto ? 'he' : 'ring';
  let plan = await ctx.client.poll('/agg/plan', { id, mode, members: (opts.members ?? []).join(','), audience: (opts.audience ?? []).join(',') });
  for (;;) {
    const attempt = Number(plan.header.attempt);
    const participants = plan.header.participants as string[];
    testHookExit(ctx.me, id);
    // a contribution may depend on who takes part (a DP noise share is sigma^2 / participants)
    const values = typeof contribution === 'function' ? contribution(participants) : contribution;
    const ring = opts.wide ? quantizeWide(values) : quantize(values);
    if (ctx.masks) applyPairwiseMasks(ring, ctx.me, ctx.identity, ctx.peers.filter((p) => participants.includes(p.name)), `${id}#${attempt}`);
    const blobs = ctx.crypto ? ctx.crypto.encrypt(ring) : [u32Bytes(ring)];
    await ctx.client.post('/agg/submit', { id, attempt }, blobs);
    if (opts.audience && !opts.audience.includes(ctx.me)) {
      // a contributor outside the audience still waits for the attempt to complete or be redone
      const r = await ctx.client.poll('/agg/result', { id, attempt });
      if (r.header.redo) {
        plan = r;
        continue;
      }
      return null;
    }
    const r = await ctx.client.poll('/agg/result', { id, attempt });
    if (r.header.redo) {
      plan = r;
      continue;
    }
    const sum = ctx.crypto ? ctx.crypto.decrypt(r.blobs, ring.length) : bytesU32(r.blobs[0]);
    return opts.wide ? dequantizeWide(sum) : dequantize(sum);
  }
}

/** Test hook: HEPOLY_FED_TEST_EXIT=name:aggregation makes this party die there (a crash mid-round). */
function testHookExit(me: string, id: string): void {
  const hook = process.env.HEPOLY_FED_TEST_EXIT;
  if (hook && hook === `${me}:${id}`) {
    process.stderr.write(`party ${me}: exiting at ${id} (HEPOLY_FED_TEST_EXIT)\n`);
    process.exit(9);
  }
}

/** Reads a sum this party does not contribute to (the label holder reading the banks' masked embeddings). */
export async function readSum(ctx: SecureSumContext, id: string, length: number, opts: SumOptions): Promise<Float64Array> {
  const mode = ctx.crypto ? 'he' : 'ring';
  let plan = await ctx.client.poll('/agg/plan', { id, mode, members: (opts.members ?? []).join(','), audience: (opts.audience ?? []).join(',') });
  for (;;) {
    const r = await ctx.client.poll('/agg/result', { id, attempt: Number(plan.header.attempt) });
    if (r.header.redo) {
      plan = r;
      continue;
    }
    const n = opts.wide ? 2 * length : length;
    const sum = ctx.crypto ? ctx.crypto.decrypt(r.blobs, n) : bytesU32(r.blobs[0]);
    return opts.wide ? dequantizeWide(sum) : dequantize(sum);
  }
}
