import { Session } from 'node:inspector/promises';
import type { Runtime } from 'node:inspector';

/**
 * Everything a JS object holds, as V8's inspector sees it: own properties, `#private` fields,
 * Map and Set entries, prototypes, and for functions their closure and module scopes (so
 * state kept in a closure or a module variable is visited too). A plain `Reflect.ownKeys`
 * walk sees none of the hidden ones; this is what the key-separation test walks instead.
 *
 * Not walked: the global scope (it reaches the whole process, the client included), the
 * scopes of functions defined outside `scopesUnder` (Node's and libraries' internals), native
 * functions, the built-in prototypes, and objects whose class is in `stopAt` (a worker thread
 * is walked through the messages it receives, not through its Node handle).
 */
export interface HeapFindings {
  /** class names (V8 `className`) of every object visited, with a path to one of them */
  classes: Map<string, string>;
  /** every object visited (typed arrays, ArrayBuffers and SharedArrayBuffers included), with a path to it */
  objects: { path: string; value: object }[];
  /** every string of 16 characters or more with its path */
  strings: { path: string; value: string }[];
  /** objects visited */
  visited: number;
}

const SLOT = '__hepolyHeapWalk';
type Slot = { root: unknown; found: object[]; index: WeakMap<object, number>; builtins: Set<unknown> };

interface RemoteObject {
  type: string;
  subtype?: string;
  className?: string;
  description?: string;
  objectId?: string;
  value?: unknown;
}
interface PropertyDescriptor {
  name: string;
  value?: RemoteObject;
  get?: RemoteObject;
}

export interface WalkOptions {
  /** walk the closure and module scopes only of functions whose file URL starts with one of these */
  scopesUnder: string | string[];
  stopAt?: string[];
  /** objects recorded but not walked into (node-seal wrappers: their content lives in wasm memory) */
  stopWhen?: (o: object) => boolean;
  /** a walk past this many objects is an error (it has left the code under test) */
  maxObjects?: number;
  /** objects this many steps from the root are recorded but not walked into (default: no limit) */
  maxDepth?: number;
}

export async function walkHeap(root: unknown, opts: WalkOptions): Promise<HeapFindings> {
  const stopAt = opts.stopAt ?? ['Worker', 'MessagePort'];
  const maxObjects = opts.maxObjects ?? 200_000;
  const maxDepth = opts.maxDepth ?? Infinity;
  const prefixes = typeof opts.scopesUnder === 'string' ? [opts.scopesUnder] : opts.scopesUnder;
  const g = globalThis as unknown as Record<string, Slot | undefined>;
  const slot: Slot = {
    root,
    found: [],
    index: new WeakMap(),
    builtins: new Set([globalThis, Object.prototype, Function.prototype, Array.prototype, Map.prototype, Set.prototype, Promise.prototype, Error.prototype]),
  };
  slot.builtins.add(slot);
  g[SLOT] = slot;
  const session = new Session();
  session.connect();
  // script id -> URL, to tell the code under test's functions from Node's and the libraries'
  const scripts = new Map<string, string>();
  session.on('Debugger.scriptParsed', (m: { params: { scriptId: string; url: string } }) => void scripts.set(m.params.scriptId, m.params.url));
  await session.post('Debugger.enable');
  const out: HeapFindings = { classes: new Map(), objects: [], strings: [], visited: 0 };
  try {
    const { result } = (await session.post('Runtime.evaluate', { expression: `globalThis.${SLOT}.root` })) as { result: RemoteObject };
    // remote objects' identities (object ids differ per call): each one's index in `found`,
    // where it is kept on first sight so the caller can inspect the object itself; -1 for a
    // built-in. One call per object's children: a round trip per object would double the walk.
    const identify = async (os: RemoteObject[]): Promise<number[]> => {
      if (!os.length) return [];
      const call: Runtime.CallFunctionOnParameterType = {
        objectId: result.objectId!,
        arguments: os.map((o) => ({ objectId: o.objectId! })),
        functionDeclaration: `function (...os) { const s = globalThis.${SLOT}; return os.map((o) => { if (s.builtins.has(o)) return -1; if (!s.index.has(o)) { s.index.set(o, s.found.length); s.found.push(o); } return s.index.get(o); }); }`,
        returnByValue: true,
      };
      const r = await session.post('Runtime.callFunctionOn', call);
      return r.result.value as number[];
    };
    /** objects the walk identifies and may enter (not scope views, primitives or native functions) */
    const isObject = (o: RemoteObject) =>
      !!o.objectId && (o.type === 'object' || o.type === 'function') && !o.subtype?.startsWith('internal#') && !(o.type === 'function' && /\[native code\]/.test(o.description ?? ''));
    const seen = new Set<number>();
    const stack: { o: RemoteObject; path: string; depth: number; id: number }[] = [{ o: result, path: 'root', depth: 0, id: (await identify([result]))[0] }];
    while (stack.length) {
      const { o, path, depth, id } = stack.pop()!;
      if (o.type === 'string' && typeof o.value === 'string' && o.value.length >= 16) out.strings.push({ path, value: o.value });
      // symbols and bigints carry an object id too, but hold nothing
      if (!o.objectId || (o.type !== 'object' && o.type !== 'function')) continue;
      if (o.type === 'function' && /\[native code\]/.test(o.description ?? '')) continue;
      // scope lists and scopes are inspector views, not JS objects: walked, not identified (the
      // functions that hold them are, so each is reached once per function)
      if (!o.subtype?.startsWith('internal#')) {
        if (id < 0 || seen.has(id)) continue;
        seen.add(id);
        out.objects.push({ path, value: slot.found[id] });
      }
      if (out.visited > maxObjects) throw new Error(`walkHeap: more than ${maxObjects} objects reachable from the root (last: ${path})`);
      out.visited++;
      const cls = o.className ?? o.type;
      if (!out.classes.has(cls)) out.classes.set(cls, path);
      if (o.subtype === 'typedarray' || o.subtype === 'arraybuffer' || o.subtype === 'dataview') continue;
      if (stopAt.includes(cls) || depth >= maxDepth) continue;
      if (!o.subtype?.startsWith('internal#')) {
        const value = out.objects[out.objects.length - 1].value;
        // an array of numbers holds no object: its values are read here, not listed one by one
        // by the inspector (a key's bytes as numbers would be hundreds of thousands of entries)
        if (Array.isArray(value) && Array.prototype.every.call(value, (x) => typeof x === 'number')) continue;
        if (opts.stopWhen?.(value)) continue;
      }
      const props = (await session.post('Runtime.getProperties', { objectId: o.objectId, ownProperties: true, accessorPropertiesOnly: false, generatePreview: false })) as {
        result?: PropertyDescriptor[];
        internalProperties?: PropertyDescriptor[];
        privateProperties?: PropertyDescriptor[];
      };
      const internal = props.internalProperties ?? [];
      const location = internal.find((p) => p.name === '[[FunctionLocation]]')?.value?.value as { scriptId: string } | undefined;
      const url = location ? (scripts.get(location.scriptId) ?? '') : '';
      const ours = prefixes.some((u) => url.startsWith(u)) && !url.includes('/node_modules/');
      const children: { o: RemoteObject; path: string }[] = [];
      for (const p of [...(props.result ?? []), ...internal, ...(props.privateProperties ?? [])]) {
        const v = p.value;
        if (!v) continue;
        if (p.name === '[[Scopes]]' && !ours) continue;
        // a scope list holds the closure, module, script and global scopes: all but the global one
        if (o.subtype === 'internal#scopeList' && /^Global/.test(v.description ?? '')) continue;
        children.push({ o: v, path: `${path}.${p.name}` });
      }
      const ids = await identify(children.filter((c) => isObject(c.o)).map((c) => c.o));
      let next = 0;
      for (const c of children) stack.push({ ...c, depth: depth + 1, id: isObject(c.o) ? ids[next++] : -2 });
    }
  } finally {
    await session.post('Debugger.disable');
    session.disconnect();
    delete g[SLOT];
  }
  return out;
}
