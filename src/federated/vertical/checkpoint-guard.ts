import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { Recipe } from '../../recipe/schema.js';
import { resolveDataPath } from '../../data/dataset.js';
import { shortPath } from '../../util/paths.js';
import { HepolyError } from '../../util/errors.js';

/** The state.json backend a vertical run's assembled checkpoint records (label-holder.ts). */
export const VERTICAL_BACKEND = 'federated-vertical';

/** The joined table's name, beside the label holder's data.path (`hepoly federate join` and `hepoly make-data payments` write it). */
export const JOINED_FILE = 'joined.csv';

/**
 * The recipe a vertical checkpoint records: as run, but with data.path on the joined table (every
 * party's columns of the label holder's rows, in its row order) and data.features on the
 * assembled model's columns, so eval, he-validate and export read the joint model's held-out
 * rows (the same seeded split the run held out) like any checkpoint's. federated.parties keeps
 * where each party's own file was.
 */
export function joinedDataRecipe(recipe: Recipe, features: string[]): Recipe {
  const data = recipe.data as Extract<Recipe['data'], { source: 'csv' }>;
  return { ...recipe, data: { ...data, path: join(dirname(data.path), JOINED_FILE), features } } as Recipe;
}

/**
 * The joint model of a vertical checkpoint needs every party's columns, which no party holds
 * (docs/federated.md, threat model): eval, he-validate and export run on it only where the joined
 * table its recipe names is found (from here, `--data DIR`, or the folder it was trained in) and
 * holds every model column. Otherwise says what is missing and how to make it, instead of failing
 * on a missing column. A checkpoint whose state.json cannot be read is left to the loader's message.
 */
export function refuseVerticalCheckpoint(dir: string, command: string, dataRoot?: string): void {
  const state = readJson(join(dir, 'state.json')) as { backend?: string; data_root?: string } | null;
  if (state?.backend !== VERTICAL_BACKEND) return;
  const features = (readJson(join(dir, 'preprocess.json')) as { features?: string[] } | null)?.features ?? [];
  const dataPath = recordedDataPath(dir);
  const roots = [dataRoot, state.data_root].filter((r): r is string => !!r);
  const found = dataPath ? findFile(dataPath, roots) : null;
  const header = found ? new Set(csvHeader(found)) : null;
  const missing = header ? features.filter((f) => !header.has(f)) : features;
  if (found && missing.length === 0) return;
  const where = shortPath(dir);
  const joined = dataPath && dataPath.endsWith(JOINED_FILE) ? dataPath : join(dirname(dataPath ?? '.'), JOINED_FILE);
  const problem = found
    ? `${shortPath(found)} lacks the model columns ${missing.slice(0, 4).map((m) => JSON.stringify(m)).join(', ')}${missing.length > 4 ? ` (${missing.length} in all)` : ''}`
    : `its joined table ${joined} was not found${roots.length ? ` (looked from here and in ${roots.map(shortPath).join(', ')})` : ' (looked from here)'}`;
  throw new HepolyError(
    `${where}: a vertical federated checkpoint (hepoly federate, partition: vertical) whose inputs are columns of several parties (${ownerCounts(features)}): ${command} needs them joined, and ${problem}. ` +
      `Fix: put the joined table at ${joined} (columns ${features.slice(0, 2).join(', ')}, ... as in ${where}/preprocess.json, plus the label; the label holder's rows in its order, a bank's columns at its column mean where it lacks the ID; \`hepoly federate join RECIPE\` writes it from the parties' files, \`hepoly make-data payments\` for the payments data), or pass --data DIR for the folder it is read from. ` +
      `Only a party allowed to see every party's columns may do this (docs/federated.md); the run's own cross-party figures are in the \`hepoly federate --json\` output and ${where}/metrics.csv`,
    { exitCode: 1 },
  );
}

function ownerCounts(features: string[]): string {
  const parties = new Map<string, number>();
  for (const f of features) {
    const owner = f.includes('.') ? f.slice(0, f.indexOf('.')) : 'the label holder';
    parties.set(owner, (parties.get(owner) ?? 0) + 1);
  }
  return [...parties].map(([p, n]) => `${p}: ${n}`).join(', ');
}

/** data.path of the checkpoint's recipe.yaml, null when unreadable (the loader then says why). */
function recordedDataPath(dir: string): string | null {
  try {
    const recipe = parseYaml(readFileSync(join(dir, 'recipe.yaml'), 'utf8')) as { data?: { path?: unknown } } | null;
    return typeof recipe?.data?.path === 'string' ? recipe.data.path : null;
  } catch {
    return null;
  }
}

function findFile(p: string, roots: string[]): string | null {
  try {
    return resolveDataPath(p, 'data.path', undefined, roots).path;
  } catch {
    return null;
  }
}

/** The first line's column names: read up to the first newline only (a joined table can be large). */
/** A CSV's header cells, read up to the first newline only (joined tables are large). */
export function csvHeader(file: string): string[] {
  const fd = openSync(file, 'r');
  const chunks: Buffer[] = [];
  try {
    const buf = Buffer.alloc(64 * 1024);
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      const part = buf.subarray(0, n);
      const end = part.indexOf(0x0a);
      chunks.push(Buffer.from(end < 0 ? part : part.subarray(0, end)));
      if (end >= 0) break;
    }
  } finally {
    closeSync(fd);
  }
  const line = Buffer.concat(chunks).toString('utf8');
  return line.replace(/\r$/, '').split(',').map((c) => c.trim().replace(/^"(.*)"$/, '$1'));
}

function readJson(file: string): unknown {
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    return null;
  }
}
