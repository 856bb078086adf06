import type { z } from 'zod';

/**
 * Finding the sub-schema at a key path, for did-you-mean hints (which keys are allowed here?)
 * and for typing `--set` values (is this key a string?). Zod keeps its structure in
 * `_zod.def`; this walks it through wrappers, objects, arrays and unions.
 */

interface Def {
  type: string;
  innerType?: Schema;
  shape?: Record<string, Schema>;
  element?: Schema;
  items?: Schema[];
  options?: Schema[];
  discriminator?: string;
  values?: unknown[];
}
type Schema = { _zod: { def: Def } };

function unwrap(s: Schema): Schema {
  let cur = s;
  while (['optional', 'default', 'nullable', 'prefault', 'readonly'].includes(cur._zod.def.type) && cur._zod.def.innerType) {
    cur = cur._zod.def.innerType;
  }
  return cur;
}

function pickOption(s: Schema, value: unknown): Schema[] {
  const def = s._zod.def;
  const options = def.options ?? [];
  if (def.discriminator && value && typeof value === 'object') {
    const want = (value as Record<string, unknown>)[def.discriminator];
    const hit = options.filter((o) => {
      const f = unwrap(o)._zod.def.shape?.[def.discriminator!];
      return f && unwrap(f)._zod.def.values?.includes(want);
    });
    if (hit.length) return hit;
  }
  return options;
}

/** Candidate schemas at `path`, given the raw (unvalidated) value of the whole recipe. */
export function schemasAt(root: z.ZodType, path: (string | number)[], raw: unknown): Schema[] {
  let current: Schema[] = [root as unknown as Schema];
  let value: unknown = raw;
  for (const key of path) {
    const next: Schema[] = [];
    for (const s of current) {
      const u = unwrap(s);
      const def = u._zod.def;
      const branches = def.type === 'union' ? pickOption(u, value).map(unwrap) : [u];
      for (const b of branches) {
        const bd = b._zod.def;
        if (bd.type === 'object' && typeof key === 'string' && bd.shape?.[key]) next.push(bd.shape[key]);
        else if (bd.type === 'array' && bd.element) next.push(bd.element);
        else if (bd.type === 'tuple' && typeof key === 'number' && bd.items?.[key]) next.push(bd.items[key]);
      }
    }
    current = next;
    value = value && typeof value === 'object' ? (value as Record<string, unknown>)[key as string] : undefined;
    if (!current.length) break;
  }
  return current;
}

/** Keys an object at `path` may have (union of all matching branches). */
export function allowedKeys(root: z.ZodType, path: (string | number)[], raw: unknown): string[] {
  const keys = new Set<string>();
  for (const s of schemasAt(root, path, raw)) {
    const u = unwrap(s);
    const branches = u._zod.def.type === 'union' ? pickOption(u, valueAt(raw, path)).map(unwrap) : [u];
    for (const b of branches) for (const k of Object.keys(b._zod.def.shape ?? {})) keys.add(k);
  }
  return [...keys];
}

/** True when the key at `path` accepts only strings (so `--set` keeps the text as typed). */
export function isStringKey(root: z.ZodType, path: (string | number)[], raw: unknown): boolean {
  const found = schemasAt(root, path, raw).map(unwrap);
  return found.length > 0 && found.every((s) => s._zod.def.type === 'string');
}

export function valueAt(raw: unknown, path: (string | number)[]): unknown {
  let v = raw;
  for (const k of path) {
    if (!v || typeof v !== 'object') return undefined;
    v = (v as Record<string, unknown>)[k as string];
  }
  return v;
}
