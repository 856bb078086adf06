import type { CkksBackend } from '../backend.js';
import type { Keyed, Team } from '../team.js';
import type { BsgsPlan } from './diagonals.js';

/**
 * One linear step of a sample pass split over a team (src/he/team.ts). Members share out the
 * baby rotations (and with them the plaintext products of their diagonals) and the giant
 * steps; the rest of the step is the same on every member.
 */

/** Which member computes each baby and rotates each giant step of one linear step. */
export interface StepShares {
  /** owner of baby `${input}:${b}`: it rotates the input and sums that baby's products */
  baby: Map<string, number>;
  /** every giant block in order (outputs by ciphertext, blocks by index) with the member that rotates it */
  blocks: { ct: number; bi: number; owner: number }[];
}

/** Who does which part of a step: work dealt round robin, rotations and the rest counted apart so each member gets its share of both. */
class Dealer {
  private rotations: number;
  private others: number;

  /** `first`: the member dealt the first item of each kind (vary it, or member 0 gets every odd one out) */
  constructor(
    private readonly size: number,
    first = 0,
  ) {
    this.rotations = first;
    this.others = first;
  }

  next(rotates: boolean): number {
    return rotates ? this.rotations++ % this.size : this.others++ % this.size;
  }
}

export const babyKey = (input: number, b: number) => `${input}:${b}`;

/**
 * A baby's work in plaintext products: its rotation (a key switch costs about as much as 80
 * products at N=8192), reading it into the sums (about 7), one per diagonal it meets.
 */
const ROTATION_TERMS = 80;
const READ_TERMS = 7;

/**
 * Babies go to members by longest-processing-time-first on that work, so each member's
 * rotations and products end together (the giant steps wait for all of them); giant steps,
 * one rotation each, are dealt round robin from a member that varies with the step.
 */
export function stepShares(bsgs: BsgsPlan, size: number, step: number): StepShares {
  const terms = new Map<string, number>();
  for (const blocks of bsgs.outputs.values()) {
    for (const bl of blocks) {
      for (const it of bl.items) {
        const key = babyKey(it.input, it.b);
        terms.set(key, (terms.get(key) ?? 0) + 1);
      }
    }
  }
  const work = [...bsgs.babies].flatMap(([input, bs]) => bs.map((b) => ({ key: babyKey(input, b), cost: (b !== 0 ? ROTATION_TERMS : 0) + READ_TERMS + (terms.get(babyKey(input, b)) ?? 0) })));
  // a stable sort: every member computes the same shares
  work.sort((x, y) => y.cost - x.cost);
  const load = new Array<number>(size).fill(0);
  const baby = new Map<string, number>();
  for (const { key, cost } of work) {
    const m = load.indexOf(Math.min(...load));
    baby.set(key, m);
    load[m] += cost;
  }
  const deal = new Dealer(size, step % size);
  const blocks: StepShares['blocks'] = [];
  for (const [ct, bl] of bsgs.outputs) bl.forEach((x, bi) => blocks.push({ ct, bi, owner: deal.next(x.g !== 0) }));
  return { baby, blocks };
}

/** The blocks in the order a member sums them: those it sends away first, so its peers have them by the time they ask. */
export function othersFirst<C>(team: Team<C> | undefined, shares: StepShares): { order: StepShares['blocks']; others: number } {
  if (!team) return { order: shares.blocks, others: 0 };
  const others = shares.blocks.filter((b) => b.owner !== team.rank);
  return { order: [...others, ...shares.blocks.filter((b) => b.owner === team.rank)], others: others.length };
}

const partialsTag = (step: number) => `step ${step}: giant-step partial sums`;

/** Each giant block's partial sum this member holds to the block's owner (the inners of others' blocks become null). */
export function sendPartials<C>(team: Team<C>, be: CkksBackend<C, unknown>, step: number, shares: StepShares, inners: Map<number, (C | null)[]>): void {
  const outgoing: Keyed<C>[][] = Array.from({ length: team.size }, () => []);
  shares.blocks.forEach(({ ct, bi, owner }, key) => {
    const row = inners.get(ct)!;
    const c = row[bi];
    if (!c || owner === team.rank) return;
    outgoing[owner].push({ key, c });
    row[bi] = null;
  });
  team.send(partialsTag(step), outgoing);
  for (const items of outgoing) for (const { c } of items) be.free(c);
}

/** The peers' partial sums of this member's blocks, added in: its inners then hold the whole sums of its own blocks. */
export function collectPartials<C>(team: Team<C>, be: CkksBackend<C, unknown>, step: number, shares: StepShares, inners: Map<number, (C | null)[]>): void {
  for (const { key, c } of team.collect(partialsTag(step))) {
    const { ct, bi } = shares.blocks[key];
    const row = inners.get(ct)!;
    addOrSet(be, row, bi, c);
  }
}

/** Every member's partial output ciphertexts to every other, each summing all: the whole outputs on every member. */
export function sumOutputs<C>(team: Team<C>, be: CkksBackend<C, unknown>, step: number, accs: (C | null)[]): void {
  const mine = accs.flatMap((c, key) => (c ? [{ key, c }] : []));
  const received = team.exchange(`step ${step}: partial outputs`, Array.from({ length: team.size }, (_, q) => (q === team.rank ? [] : mine)));
  for (const { key, c } of received) addOrSet(be, accs, key, c);
}

function addOrSet<C>(be: CkksBackend<C, unknown>, row: (C | null)[], k: number, c: C): void {
  const prior = row[k];
  if (!prior) row[k] = c;
  else {
    be.addInPlace(prior, c);
    be.free(c);
  }
}
