import type { CkksBackend } from '../backend.js';

/**
 * Client-side refresh (`--refresh client`): without bootstrapping, a ciphertext that has run
 * out of levels goes back to the client, which decrypts it and encrypts the values again at
 * the top level. The server only ever holds public material: it sends ciphertext bytes and
 * receives fresh ciphertext bytes. Every refresh is recorded with the place it happened, so
 * the report says exactly how often the client stepped in and why. (A transformer-local
 * equivalent of the CNN path's refresh: this evaluator is an interpreter that asks for levels
 * at fixed points rather than a compiled program cut into segments.)
 */

/** The client's half of the exchange: bytes in, bytes out. */
export interface RefreshChannel {
  decrypt(bytes: Uint8Array): Float64Array;
  encrypt(vectors: Float64Array[]): Uint8Array[];
}

export interface RefreshEvent {
  /** where: node and step, e.g. "b1_attn/reciprocal" */
  at: string;
  ciphertexts: number;
  /** the (lowest) level the ciphertexts had when they were sent back */
  fromLevel: number;
  ms: number;
}

/**
 * Makes sure ciphertexts have at least `need` levels left before a step that spends them.
 * Returns an array where each ciphertext below `need` is replaced by a fresh one (the caller
 * frees the replaced ones it owns: `out[i] !== cts[i]`); the same array when none was low.
 */
export type EnsureLevels<C> = (cts: C[], need: number, at: string) => C[];

export class ClientRefresher<C> {
  readonly events: RefreshEvent[] = [];
  bytesUp = 0;
  bytesDown = 0;

  constructor(
    private readonly be: CkksBackend<C>,
    private readonly client: RefreshChannel,
  ) {}

  get count(): number {
    return this.events.length;
  }

  get ciphertexts(): number {
    return this.events.reduce((a, e) => a + e.ciphertexts, 0);
  }

  /** client time spent on refreshes so far (the evaluator subtracts it from its components) */
  get ms(): number {
    return this.events.reduce((a, e) => a + e.ms, 0);
  }

  readonly ensure: EnsureLevels<C> = (cts, need, at) => {
    const low = cts.flatMap((c, i) => (this.be.levelOf(c) < need ? [i] : []));
    if (!low.length) return cts;
    if (need > this.be.topLevel) {
      throw new Error(`internal: ${at} needs ${need} levels in one step, the chain has ${this.be.topLevel}`);
    }
    const t0 = performance.now();
    const fromLevel = Math.min(...low.map((i) => this.be.levelOf(cts[i])));
    const sent = low.map((i) => this.be.serialize(cts[i]));
    const fresh = this.client.encrypt(sent.map((b) => this.client.decrypt(b)));
    this.bytesUp += sent.reduce((a, b) => a + b.length, 0);
    this.bytesDown += fresh.reduce((a, b) => a + b.length, 0);
    const out = cts.slice();
    low.forEach((i, k) => (out[i] = this.be.deserialize(fresh[k])));
    this.events.push({ at, ciphertexts: low.length, fromLevel, ms: performance.now() - t0 });
    return out;
  };
}

/** Summary "b1_attn/reciprocal x16, b1_act x1" (events at the same place grouped). */
export function describeRefreshes(events: RefreshEvent[]): { at: string; times: number; ciphertexts: number }[] {
  const by = new Map<string, { at: string; times: number; ciphertexts: number }>();
  for (const e of events) {
    const g = by.get(e.at) ?? { at: e.at, times: 0, ciphertexts: 0 };
    g.times++;
    g.ciphertexts += e.ciphertexts;
    by.set(e.at, g);
  }
  return [...by.values()];
}
