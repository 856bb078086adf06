import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { Recipe } from '../../recipe/schema.js';
import { sortLabels, stratifiedSplit } from '../../data/index.js';
import { HepolyError } from '../../util/errors.js';
import { writeFileAtomic } from '../../util/atomic-file.js';
import { makeRng } from '../../util/rng.js';
import { readPartyTable, toCsv } from '../party-data.js';

/**
 * Simulates a horizontal federation from one CSV (`federated.split`): the training split of
 * data.path (the same seeded stratified split `hepoly train` makes) is dealt out to the
 * parties, and data.path's validation split stays out of every party as the held-out test set,
 * so `hepoly eval` on the federated checkpoint measures data no party trained on.
 * - iid: each class's rows are dealt round-robin after a seeded shuffle;
 * - label-skew: a row of class c goes to party (c mod parties) with probability `skew`, else to
 *   a party drawn uniformly.
 */
export function writePartySplits(recipe: Recipe, recipeFile: string): { party: string; path: string; rows: number }[] {
  const fed = recipe.federated!;
  const split = fed.split!;
  if (recipe.data.source !== 'csv') throw new HepolyError(`${recipeFile}: federated.split: needs data.source csv (found ${recipe.data.source}). Remove federated.split and give each party its own CSV`);
  const table = readPartyTable(recipe.data.path, 'data.path', recipeFile);
  const labelCol = table.columns.indexOf(recipe.data.label);
  if (labelCol < 0) throw new HepolyError(`${table.file} (data.path in ${recipeFile}): no column ${JSON.stringify(recipe.data.label)} (data.label). Set data.label to one of ${table.columns.join(', ')}`);
  const classes = sortLabels(table.rows.map((r) => r[labelCol]));
  const y = Int32Array.from(table.rows, (r) => classes.indexOf(r[labelCol]));
  const { train } = stratifiedSplit(y, classes.length, recipe.data.split.validation, recipe.seed);
  const P = fed.parties.length;
  const rng = makeRng(recipe.seed, `federated-split:${split.scheme}`);
  const assigned: number[][] = Array.from({ length: P }, () => []);
  const dealt = new Array<number>(classes.length).fill(0);
  for (const i of train) {
    const c = y[i];
    let p: number;
    if (split.scheme === 'iid') p = (dealt[c]++ + c) % P;
    else p = rng.next() < split.skew ? c % P : rng.int(P);
    assigned[p].push(i);
  }
  return fed.parties.map((party, p) => {
    const out = resolve(party.path);
    mkdirSync(dirname(out), { recursive: true });
    writeFileAtomic(out, toCsv([table.columns, ...assigned[p].map((i) => table.rows[i])]));
    return { party: party.name, path: party.path, rows: assigned[p].length };
  });
}
