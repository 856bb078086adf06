import { createHmac } from 'node:crypto';
import { HepolyError } from '../../util/errors.js';

/**
 * ID alignment by salted hashes, a documented weaker variant of private set intersection
 * (docs/federated.md, "ID alignment"). The label holder draws a 32-byte salt, seals it for each
 * bank, and sends the HMAC-SHA256(salt, id) token of each of its rows. A bank looks its own IDs
 * up among the tokens. What it leaks: the coordinator sees tokens it cannot invert (no salt)
 * but learns the number of rows and how often a token repeats; a bank learns which of its own
 * IDs the label holder has and how often (and can test any guessed ID, since it holds the
 * salt); the label holder learns nothing about the banks' tables, not even which rows matched.
 */
export function idToken(salt: Uint8Array, id: string): string {
  return createHmac('sha256', salt).update(id, 'utf8').digest('base64url').slice(0, 22);
}

export interface Alignment {
  /** per label-holder row: the bank's row, or -1 */
  rowOf: Int32Array;
  matched: number;
  /** most label-holder rows sharing one bank row (a DP sensitivity multiplier) */
  maxMultiplicity: number;
}

export function alignRows(tokens: string[], salt: Uint8Array, bankIds: string[], where: { file: string; field: string; recipeFile: string }): Alignment {
  const byToken = new Map<string, number>();
  bankIds.forEach((id, r) => {
    const t = idToken(salt, id);
    if (byToken.has(t)) throw new HepolyError(`${where.file} (${where.field} in ${where.recipeFile}): ID ${JSON.stringify(id)} appears twice (rows ${byToken.get(t)! + 2} and ${r + 2}). A vertical party needs one row per ID: merge or drop the duplicate`);
    byToken.set(t, r);
  });
  const rowOf = new Int32Array(tokens.length).fill(-1);
  const uses = new Map<number, number>();
  let matched = 0;
  tokens.forEach((t, i) => {
    const r = byToken.get(t);
    if (r === undefined) return;
    rowOf[i] = r;
    matched++;
    uses.set(r, (uses.get(r) ?? 0) + 1);
  });
  if (!matched) {
    throw new HepolyError(
      `${where.file} (${where.field} in ${where.recipeFile}): none of its ${bankIds.length} IDs match the label holder's ${tokens.length} rows. Check that the key columns hold the same identifiers on both sides (same format, e.g. "ACC000123") and that federated.parties[].key names the right columns`,
    );
  }
  return { rowOf, matched, maxMultiplicity: Math.max(...uses.values()) };
}
