import { MessageChannel, type MessagePort, receiveMessageOnPort } from 'node:worker_threads';
import { HepolyError } from '../util/errors.js';

/**
 * A team: several worker threads evaluating one sample together (`--workers-per-sample`), for
 * latency rather than throughput. Every member holds the whole pass's tensors; a linear step's
 * baby rotations and their plaintext products are dealt out among members, then each giant
 * step's partial sums go to the member that rotates it, and the members' partial outputs are
 * summed by all. Sums of ciphertexts are exact, so a team's result has the same bytes as one
 * worker's (but for an output ciphertext no input reaches, which holds only the bias: each
 * member encrypts that one itself). The evaluator is synchronous (SEAL is), so members block on each other: messages
 * on MessagePorts, read with receiveMessageOnPort, and a shared doorbell per member to sleep
 * on with Atomics.wait.
 */

export interface Keyed<C> {
  key: number;
  c: C;
}

export interface Team<C> {
  readonly rank: number;
  readonly size: number;
  /**
   * Sends peer q the items outgoing[q] and returns what every peer sent this member, in rank
   * order; blocks until each has. Every member calls it with the same tag, in the same order.
   */
  exchange(tag: string, outgoing: readonly (readonly Keyed<C>[])[]): Keyed<C>[];
  /** The first half of `exchange`, which never blocks: work done before `collect` overlaps the peers' */
  send(tag: string, outgoing: readonly (readonly Keyed<C>[])[]): void;
  /** The second half: blocks until every peer's items for `tag` are in. */
  collect(tag: string): Keyed<C>[];
  /** Tells the peers this member failed, so they stop waiting and fail too. */
  abort(reason: string): void;
  /**
   * Starts the team's next request (the server numbers them): what peers sent for an earlier
   * one, such as the rest of a failed request, is dropped.
   */
  begin(epoch: number): void;
}

/** What a team member's thread is given: its rank, a port to each peer (null at its own rank), the team's doorbells. */
export interface TeamInit {
  rank: number;
  size: number;
  ports: (MessagePort | null)[];
  /** Int32Array(size) over it: member r's doorbell, rung after each message posted to r */
  bells: SharedArrayBuffer;
}

/** The ports and doorbells of one team of `size` threads (the server hands member r inits[r], transferring its ports). */
export function teamInits(size: number): TeamInit[] {
  const bells = new SharedArrayBuffer(4 * size);
  const ports: (MessagePort | null)[][] = Array.from({ length: size }, () => new Array(size).fill(null));
  for (let a = 0; a < size; a++) {
    for (let b = a + 1; b < size; b++) {
      const { port1, port2 } = new MessageChannel();
      ports[a][b] = port1;
      ports[b][a] = port2;
    }
  }
  return ports.map((p, rank) => ({ rank, size, ports: p, bells }));
}

/**
 * `--workers-per-sample K` for `workers` threads: a positive whole number that divides them.
 * Every entry point (he-validate, HEServer, serve) checks it here; each adds what its own
 * packing or queue allows.
 */
export function checkTeamSize(k: number, workers: number): number {
  if (!Number.isInteger(k) || k < 1) throw new HepolyError(`--workers-per-sample: expected a positive whole number, found ${k}`, { exitCode: 2 });
  if (workers % k !== 0) throw new HepolyError(`--workers-per-sample ${k} does not divide --workers ${workers}: use a divisor, e.g. --workers ${k * Math.max(1, Math.floor(workers / k))}`, { exitCode: 2 });
  return k;
}

/** A member waits this long for a peer before it gives up (a peer thread that died without a word). */
export const PEER_TIMEOUT_MS = 10 * 60 * 1000;

type PeerMessage = { epoch: number } & ({ tag: string; keys: number[]; bytes: Uint8Array[] } | { abort: string });

/** A team member over MessagePorts; ciphertexts cross as their serialized bytes. */
export class PortTeam<C> implements Team<C> {
  readonly rank: number;
  readonly size: number;
  private readonly bells: Int32Array;
  private epoch = 0;

  constructor(
    private readonly init: TeamInit,
    private readonly codec: { serialize(c: C): Uint8Array; deserialize(b: Uint8Array): C },
    private readonly timeoutMs = PEER_TIMEOUT_MS,
  ) {
    this.rank = init.rank;
    this.size = init.size;
    this.bells = new Int32Array(init.bells);
  }

  exchange(tag: string, outgoing: readonly (readonly Keyed<C>[])[]): Keyed<C>[] {
    this.send(tag, outgoing);
    return this.collect(tag);
  }

  send(tag: string, outgoing: readonly (readonly Keyed<C>[])[]): void {
    for (let q = 0; q < this.size; q++) {
      if (q === this.rank) continue;
      const items = outgoing[q] ?? [];
      const bytes = items.map((it) => this.codec.serialize(it.c));
      this.post(q, { epoch: this.epoch, tag, keys: items.map((it) => it.key), bytes }, bytes.filter(spansBuffer).map((b) => b.buffer as ArrayBuffer));
    }
  }

  collect(tag: string): Keyed<C>[] {
    const received: Keyed<C>[] = [];
    for (let q = 0; q < this.size; q++) {
      if (q === this.rank) continue;
      const m = this.receive(q);
      if ('abort' in m) throw new Error(`team member ${q} failed: ${m.abort}`);
      if (m.tag !== tag) throw new Error(`internal: team member ${q} sent "${m.tag}" while member ${this.rank} waited for "${tag}"`);
      m.keys.forEach((key, k) => received.push({ key, c: this.codec.deserialize(m.bytes[k]) }));
    }
    return received;
  }

  abort(reason: string): void {
    for (let q = 0; q < this.size; q++) if (q !== this.rank) this.post(q, { epoch: this.epoch, abort: reason }, []);
  }

  begin(epoch: number): void {
    this.epoch = epoch;
  }

  private post(q: number, m: PeerMessage, transfer: ArrayBuffer[]): void {
    this.init.ports[q]!.postMessage(m, transfer);
    Atomics.add(this.bells, q, 1);
    Atomics.notify(this.bells, q);
  }

  private receive(q: number): PeerMessage {
    const port = this.init.ports[q]!;
    const deadline = Date.now() + this.timeoutMs;
    for (;;) {
      // read the bell before the port: a message posted after the read rings it, and wait returns at once
      const rung = Atomics.load(this.bells, this.rank);
      const got = receiveMessageOnPort(port);
      if (got) {
        const m = got.message as PeerMessage;
        if (m.epoch === this.epoch) return m;
        continue;
      }
      const left = deadline - Date.now();
      if (left <= 0 || Atomics.wait(this.bells, this.rank, rung, left) === 'timed-out') {
        throw new Error(`team member ${q} sent nothing for ${Math.round(this.timeoutMs / 1000)} s (its thread may have died); member ${this.rank} gives up`);
      }
    }
  }
}

/** Bytes whose buffer can move to the peer instead of being copied: SEAL's serialization is a fresh array over a buffer of its own. */
function spansBuffer(b: Uint8Array): boolean {
  return b.byteOffset === 0 && b.byteLength === b.buffer.byteLength && b.buffer instanceof ArrayBuffer;
}
