import { randomBytes } from 'node:crypto';
import { ristretto255, ristretto255_hasher } from '@noble/curves/ed25519.js';
import { HepolyError } from '../../util/errors.js';

/**
 * ECDH private set intersection on ristretto255 (Meadows 1986; Huberman, Franklin and Hogg
 * 1999; the DH-PSI of vertical FL frameworks) with the intersection learned by the bank only,
 * between the label holder L and one bank B:
 *   1. L sends a·H(u) for each of its distinct IDs u in a random order, and (sealed for B)
 *      the position of each of its rows' IDs in that list;
 *   2. B sends b·H(v) for each of its IDs v, in its row order;
 *   3. L sends a·(b·H(v)) back, in the same order (sealed for B);
 *   4. B computes b·(a·H(u)): equal to a·b·H(v) exactly when u = v, so B learns which label
 *      holder rows are its accounts, and which rows share an ID it lacks (for its DP noise).
 * H is RFC 9380 hash-to-curve, a and b are fresh uniform scalars per run. Under the decisional
 * Diffie-Hellman assumption a blinded point is indistinguishable from a random one to whoever
 * lacks the other scalar. So L learns B's size and nothing else (not even which of its rows
 * matched); B learns the intersection with its multiplicities, L's row count and ID
 * multiplicities, nothing about L's IDs outside the intersection; the coordinator, holding
 * neither scalar nor the pairwise key, learns only the sizes.
 */

const DST = 'hepoly-federated-psi-v1';
const POINT = 32;
const Point = ristretto255.Point;

function hashPoint(id: string): ReturnType<typeof Point.fromBytes> {
  return ristretto255_hasher.hashToCurve(new TextEncoder().encode(id), { DST });
}

/** H(id), encoded: RFC 9380 hash-to-curve onto ristretto255 under this protocol's domain tag. */
export function hashId(id: string): Uint8Array {
  return hashPoint(id).toBytes();
}

/** One side's secret blinding scalar; it never leaves this object. */
export class PsiKey {
  readonly #k: bigint;

  constructor() {
    // 64 uniform bytes reduced mod the group order: bias below 2^-250
    this.#k = (BigInt(`0x${randomBytes(64).toString('hex')}`) % (Point.Fn.ORDER - 1n)) + 1n;
  }

  /** k·H(id) for each ID, packed 32 bytes apiece. */
  blindIds(ids: readonly string[]): Uint8Array {
    return pack(ids.map((id) => hashPoint(id).multiply(this.#k)));
  }

  /** k·P for each packed point P (the other side's blinded IDs). */
  reblind(packed: Uint8Array, what: string): Uint8Array {
    return pack(unpack(packed, what).map((p) => p.multiply(this.#k)));
  }
}

function pack(points: { toBytes(): Uint8Array }[]): Uint8Array {
  const out = new Uint8Array(points.length * POINT);
  points.forEach((p, i) => out.set(p.toBytes(), i * POINT));
  return out;
}

function unpack(packed: Uint8Array, what: string): ReturnType<typeof Point.fromBytes>[] {
  if (packed.length % POINT) throw new HepolyError(`${what}: ${packed.length} bytes is not a list of 32-byte ristretto255 points. The run is corrupted: restart it`);
  const out = [];
  for (let o = 0; o < packed.length; o += POINT) {
    try {
      out.push(Point.fromBytes(packed.subarray(o, o + POINT)));
    } catch (e) {
      throw new HepolyError(`${what}: point ${o / POINT} is not a valid ristretto255 encoding. The run is corrupted: restart it`, { cause: e });
    }
  }
  return out;
}

function hexAt(packed: Uint8Array, i: number): string {
  return Buffer.from(packed.subarray(i * POINT, (i + 1) * POINT)).toString('hex');
}

/** The label holder's side: its rows' IDs, the distinct IDs in a random order, its scalar. */
export class PsiSender {
  readonly key = new PsiKey();
  /** the distinct IDs in the order they go on the wire */
  readonly order: string[];
  /** per row: its ID's position in `order` (sealed for the bank) */
  readonly idIndex: Int32Array;

  constructor(rowIds: readonly string[]) {
    const distinct = [...new Set(rowIds)];
    // a random order, so the position of a point says nothing about the rows it stands for
    const r = randomBytes(4 * distinct.length);
    for (let i = distinct.length - 1; i > 0; i--) {
      const j = r.readUInt32LE(4 * i) % (i + 1);
      [distinct[i], distinct[j]] = [distinct[j], distinct[i]];
    }
    this.order = distinct;
    const at = new Map(distinct.map((id, k) => [id, k]));
    this.idIndex = Int32Array.from(rowIds, (id) => at.get(id)!);
  }

  /** Message 1: a·H(u) per distinct ID. */
  first(): Uint8Array {
    return this.key.blindIds(this.order);
  }

  /** Message 3: a·(b·H(v)) for the bank's message 2, in its order. */
  third(bankBlinded: Uint8Array, bank: string): Uint8Array {
    return this.key.reblind(bankBlinded, `the PSI answer of ${bank}`);
  }
}

/** The bank's message 2: b·H(v) for its IDs in row order (an ID twice is refused). */
export function psiAnswer(key: PsiKey, ownIds: readonly string[], where: { file: string; field: string; recipeFile: string }): Uint8Array {
  const seen = new Map<string, number>();
  ownIds.forEach((id, r) => {
    if (seen.has(id)) throw new HepolyError(`${where.file} (${where.field} in ${where.recipeFile}): ID ${JSON.stringify(id)} appears twice (rows ${seen.get(id)! + 2} and ${r + 2}). A vertical party needs one row per ID: merge or drop the duplicate`);
    seen.set(id, r);
  });
  return key.blindIds(ownIds);
}

/**
 * The bank's last step: b·(a·H(u)) (`doubled`, worked out while the label holder computes
 * message 3) against a·b·H(v) gives, per distinct label-holder ID, the bank row holding it, or
 * -1; `idIndex` spreads that over the label holder's rows.
 */
export function psiRows(doubled: Uint8Array, third: Uint8Array, idIndex: Int32Array): { rowOf: Int32Array; idIndex: Int32Array } {
  const bankRow = new Map<string, number>();
  for (let j = 0; j < third.length / POINT; j++) bankRow.set(hexAt(third, j), j);
  const rowOfId = Int32Array.from({ length: doubled.length / POINT }, (_, k) => bankRow.get(hexAt(doubled, k)) ?? -1);
  for (const k of idIndex) if (k < 0 || k >= rowOfId.length) throw new HepolyError(`the label holder's PSI row index names ID ${k} of ${rowOfId.length}. The run is corrupted: restart it`);
  return { rowOf: Int32Array.from(idIndex, (k) => rowOfId[k]), idIndex };
}

export interface Alignment {
  /** per label-holder row: the bank's row, or -1 */
  rowOf: Int32Array;
  /** per label-holder row: which of the label holder's distinct IDs it names */
  idIndex: Int32Array;
  matched: number;
  /** most label-holder rows sharing one bank row (a DP sensitivity multiplier) */
  maxMultiplicity: number;
}

/** The bank's reading of the row map it received: refuses a bank none of whose IDs matched. */
export function alignment({ rowOf, idIndex }: { rowOf: Int32Array; idIndex: Int32Array }, bankRows: number, where: { file: string; field: string; recipeFile: string }): Alignment {
  const uses = new Map<number, number>();
  for (const r of rowOf) if (r >= 0) uses.set(r, (uses.get(r) ?? 0) + 1);
  const matched = rowOf.reduce((n, r) => n + (r >= 0 ? 1 : 0), 0);
  if (!matched) {
    throw new HepolyError(
      `${where.file} (${where.field} in ${where.recipeFile}): none of its ${bankRows} IDs match the label holder's ${rowOf.length} rows. Check that the key columns hold the same identifiers on both sides (same format, e.g. "ACC000123") and that federated.parties[].key names the right columns`,
    );
  }
  return { rowOf, idIndex, matched, maxMultiplicity: Math.max(...uses.values()) };
}
