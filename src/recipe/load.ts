import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { basename, dirname, extname, join, relative, resolve } from 'node:path';
import { LineCounter, parseDocument, parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { RecipeSchema, type Recipe } from './schema.js';
import { allowedKeys, isStringKey, valueAt } from './schema-walk.js';
import { HepolyError } from '../util/errors.js';
import { didYouMean, closest } from '../util/suggest.js';
import { packageRoot, shortPath } from '../util/paths.js';

/**
 * Recipe loading: find the file, follow `extends` (deep merge, lists replace), apply
 * `--set key=value` overrides, validate through the schema once. Every error names the file
 * (and line) where the offending key was written, the key path, what was expected and found.
 */

export interface LoadedRecipe {
  recipe: Recipe;
  /** absolute path of the recipe file that was asked for */
  file: string;
  /** files read, the recipe first, then what it extends */
  chain: string[];
}

interface Source {
  file: string;
  doc: ReturnType<typeof parseDocument>;
  lines: LineCounter;
}

type Raw = Record<string, unknown>;

const DISCRIMINATORS = ['kind', 'source', 'type'];

/**
 * Deep merge where lists replace, and an object whose `kind` (or `source`, `type`) differs
 * from the one it overrides replaces it whole: a cnn model must not inherit an mlp's `hidden`.
 */
function mergeRecipes(base: Raw, own: Raw): Raw {
  const out: Raw = { ...base };
  for (const [k, v] of Object.entries(own)) {
    const b = base[k];
    if (isPlainObject(v) && isPlainObject(b) && !DISCRIMINATORS.some((d) => d in v && d in b && v[d] !== b[d])) {
      out[k] = mergeRecipes(b, v);
    } else {
      out[k] = v;
    }
  }
  return out;
}

function isPlainObject(v: unknown): v is Raw {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

export function loadRecipe(pathOrName: string, overrides: string[] = []): LoadedRecipe {
  const file = findRecipeFile(pathOrName);
  const sources: Source[] = [];
  const raw = readWithExtends(file, sources, []);
  const setPaths: string[][] = [];
  for (const o of overrides) setPaths.push(applyOverride(raw, o));
  const result = RecipeSchema.safeParse(raw);
  if (!result.success) {
    throw new HepolyError(formatIssues(result.error.issues, raw, sources, setPaths, overrides));
  }
  return { recipe: result.data, file, chain: sources.map((s) => s.file) };
}

/** Recipes shipped in `recipes/` (cwd first, then the package), by name without extension. */
export function shippedRecipes(): Map<string, string> {
  const found = new Map<string, string>();
  for (const dir of [join(process.cwd(), 'recipes'), join(packageRoot(), 'recipes')]) {
    if (!existsSync(dir)) continue;
    for (const f of readdirSync(dir)) {
      if (/\.ya?ml$/.test(f) && !found.has(f.replace(/\.ya?ml$/, ''))) found.set(f.replace(/\.ya?ml$/, ''), join(dir, f));
    }
  }
  return found;
}

function findRecipeFile(pathOrName: string): string {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(pathOrName)) {
    throw new HepolyError(`recipe ${pathOrName}: hepoly reads local files only, not URLs. Download the recipe and give its path`);
  }
  const abs = resolve(pathOrName);
  if (existsSync(abs)) {
    if (statSync(abs).isDirectory()) throw new HepolyError(`recipe ${pathOrName}: is a folder; give a recipe YAML file (e.g. ${join(pathOrName, 'recipe.yaml')})`);
    return abs;
  }
  const shipped = shippedRecipes();
  const name = basename(pathOrName, extname(pathOrName));
  const exact = shipped.get(name);
  // only a bare name (resnet-poly) or the recipe/ typo falls back to a shipped recipe: any
  // other missing path is an error, never a silent substitute
  if (exact && isShippedAlias(pathOrName)) {
    process.stderr.write(`note: ${pathOrName} does not exist; using the shipped recipe ${relative(process.cwd(), exact) || exact}\n`);
    return exact;
  }
  const near = exact ? name : closest(name, shipped.keys());
  const hint = near
    ? `did you mean ${relative(process.cwd(), shipped.get(near)!)}?`
    : `shipped recipes: ${[...shipped.keys()].sort().join(', ') || '(none found)'}`;
  throw new HepolyError(`recipe file not found: ${pathOrName} (${hint})`);
}

function isShippedAlias(p: string): boolean {
  return /^(recipes?\/)?[\w.-]+$/.test(p.replace(/\\/g, '/')) && !p.startsWith('.');
}

function readWithExtends(file: string, sources: Source[], stack: string[]): Raw {
  if (stack.includes(file)) {
    throw new HepolyError(`${file}: extends: circular chain ${[...stack, file].map((f) => basename(f)).join(' -> ')}. Remove one of the extends`);
  }
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const from = stack.length ? `${stack[stack.length - 1]}: extends: ` : '';
    throw new HepolyError(`${from}cannot read recipe ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}. Check the path (extends is relative to the file that names it)`);
  }
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: true });
  if (doc.errors.length) {
    const err = doc.errors[0];
    const pos = lines.linePos(err.pos[0]);
    throw new HepolyError(`${file}:${pos.line}:${pos.col}: not valid YAML: ${err.message.split('\n')[0]}`);
  }
  let value: unknown;
  try {
    value = doc.toJS();
  } catch (e) {
    // e.g. a "billion laughs" alias bomb: refused before it can fill the memory
    throw new HepolyError(`${file}: not a usable recipe: ${(e as Error).message.split('\n')[0]}. Write the values out instead of deeply nested YAML aliases`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new HepolyError(`${file}: a recipe is a YAML mapping (name:, data:, model:, train:), found ${value === null ? 'an empty file' : Array.isArray(value) ? 'a list' : typeof value}`);
  }
  sources.push({ file, doc, lines });
  const own = value as Raw;
  const parentRef = own.extends;
  delete own.extends;
  if (parentRef === undefined) return own;
  if (typeof parentRef !== 'string') {
    throw new HepolyError(`${file}: extends: expected a file path (string), found ${JSON.stringify(parentRef)}`);
  }
  const parent = readWithExtends(resolve(dirname(file), parentRef), sources, [...stack, file]);
  return mergeRecipes(parent, own);
}

/** `a.b.c=value`: the value is read as YAML (3 -> number, [1, 2] -> list) unless the key is a string. */
function applyOverride(raw: Raw, override: string): string[] {
  const eq = override.indexOf('=');
  if (eq <= 0) {
    throw new HepolyError(`--set ${override}: expected key.path=value (e.g. --set train.epochs=3)`, { exitCode: 2 });
  }
  const path = override.slice(0, eq).split('.');
  const text = override.slice(eq + 1);
  const keyPath = path.map((k) => (/^\d+$/.test(k) ? Number(k) : k));
  let value: unknown;
  if (isStringKey(RecipeSchema as z.ZodType, keyPath, raw)) value = text;
  else {
    try {
      value = parseYaml(text);
    } catch {
      value = text;
    }
  }
  let obj: Record<string, unknown> = raw;
  for (let i = 0; i < path.length - 1; i++) {
    const k = path[i];
    if (obj[k] === undefined || obj[k] === null || typeof obj[k] !== 'object') obj[k] = {};
    obj = obj[k] as Record<string, unknown>;
  }
  obj[path[path.length - 1]] = value;
  return path;
}

function formatIssues(issues: z.core.$ZodIssue[], raw: Raw, sources: Source[], setPaths: string[][], overrides: string[]): string {
  const lines = issues.map((issue) => {
    const path = issue.path.map((p) => (typeof p === 'symbol' ? String(p) : p));
    let keyPath = path;
    let text: string;
    switch (issue.code) {
      case 'unrecognized_keys': {
        const allowed = allowedKeys(RecipeSchema as z.ZodType, path, raw);
        const key = issue.keys[0];
        keyPath = [...path, key];
        text = `unknown key "${key}"${didYouMean(key, allowed)}; allowed here: ${allowed.join(', ')}`;
        break;
      }
      case 'invalid_type': {
        const found = valueAt(raw, path);
        text = found === undefined ? `missing required key (expected ${issue.expected})` : `expected ${issue.expected}, found ${show(found)}`;
        break;
      }
      case 'invalid_union': {
        const found = valueAt(raw, path);
        if ('discriminator' in issue && issue.discriminator) {
          const options = (issue as { options?: unknown[] }).options ?? [];
          const given = valueAt(raw, path);
          text = given === undefined
            ? `missing required key (expected one of ${options.join(' | ')})`
            : `expected one of ${options.join(' | ')}, found ${show(given)}${typeof given === 'string' ? didYouMean(given, options.map(String)) : ''}`;
        } else {
          const alternatives = issue.errors.flatMap((branch) =>
            branch
              .filter((e) => e.path.length === 0)
              .map((e) => (e.code === 'invalid_value' ? e.values.map((v) => JSON.stringify(v)).join(' | ') : e.code === 'invalid_type' ? `${/^[aeiou]/.test(e.expected) ? 'an' : 'a'} ${e.expected}` : e.message)),
          );
          const uniq = [...new Set(alternatives)];
          const inner = issue.errors.flat().filter((e) => e.path.length > 0);
          text = uniq.length
            ? `expected ${uniq.join(' or ')}, found ${show(found)}`
            : inner.length
              ? `${inner[0].path.join('.')}: ${inner[0].message}`
              : issue.message;
        }
        break;
      }
      case 'invalid_value':
        text = `expected ${issue.values.map((v) => JSON.stringify(v)).join(' | ')}, found ${show(valueAt(raw, path))}`;
        break;
      case 'too_small':
      case 'too_big':
        text = `${issue.message.replace(/^Too (small|big): expected (number|array|string) to (be|have) /, 'expected ')}, found ${show(valueAt(raw, path))}`;
        break;
      default:
        text = `${issue.message}, found ${show(valueAt(raw, path))}`;
    }
    return `${where(keyPath, sources, setPaths, overrides)}: ${keyPath.join('.') || '(top level)'}: ${text}`;
  });
  return lines.length === 1 ? lines[0] : `invalid recipe:\n  ${lines.join('\n  ')}`;
}

/** The file and line that wrote `path` (or the --set that did), else the recipe file itself. */
function where(path: (string | number)[], sources: Source[], setPaths: string[][], overrides: string[]): string {
  const p = path.map(String);
  for (let i = setPaths.length - 1; i >= 0; i--) {
    const s = setPaths[i];
    const n = Math.min(s.length, p.length);
    if (s.slice(0, n).every((k, j) => k === p[j])) return `--set ${overrides[i]}`;
  }
  for (let n = p.length; n >= 1; n--) {
    for (const src of sources) {
      const node = src.doc.getIn(path.slice(0, n), true) as { range?: [number, number, number] } | undefined;
      if (node && node.range) return `${shortPath(src.file)}:${src.lines.linePos(node.range[0]).line}`;
      if (src.doc.hasIn(path.slice(0, n))) return shortPath(src.file);
    }
  }
  return shortPath(sources[0].file);
}

/** Paths in messages: relative to the current directory when that is shorter. */

function show(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (typeof v === 'string') return `"${v}" (string)`;
  if (Array.isArray(v)) return `a list ${JSON.stringify(v).slice(0, 60)}`;
  if (v === null) return 'null';
  if (typeof v === 'object') return `an object {${Object.keys(v).join(', ')}}`;
  if (typeof v === 'number' && !Number.isFinite(v)) return `${String(v)} (a number too large for 64-bit floats)`;
  return `${String(v)} (${typeof v})`;
}
