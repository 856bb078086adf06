import { readFileSync } from 'node:fs';
import type { TextDataConfig } from '../recipe/schema.js';
import { HepolyError } from '../util/errors.js';
import { resolveDataPath, type LoadedData, type LoadOptions, type Split } from './dataset.js';
import { sourceLabel } from './csv.js';

/**
 * Character-level language-modelling data. The text is mapped to character ids through a
 * vocabulary (saved as the checkpoint's class labels: label i is the character with id i),
 * cut into contiguous parts (train, then validation, then test, so no window of a held-out
 * part was seen in training), and every window of `context` ids becomes one sample whose
 * class is the id of the character after it. So the classification loop trains a language
 * model unchanged, and its cross-entropy in nats / ln 2 is the bits per character.
 *
 * Inputs are ids coded as float32 (exact up to 2^24), shape [context].
 */

/** Space pads prompts shorter than the context (`hepoly sample`). */
export const PAD_CHAR = ' ';

export interface TextPreprocess {
  vocab: string[];
  context: number;
}

const show = (c: string) => (c === '\n' ? '"\\n"' : c === '\t' ? '"\\t"' : c === '\r' ? '"\\r"' : JSON.stringify(c)) + ` (U+${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')})`;

/** Splits a string into characters (code points, so a surrogate pair is one character). */
export function chars(text: string): string[] {
  return Array.from(text);
}

/** The vocabulary of a text: its distinct characters, sorted by code point. */
export function textVocabulary(text: string): string[] {
  return [...new Set(chars(text))].sort((a, b) => a.codePointAt(0)! - b.codePointAt(0)!);
}

/**
 * Maps characters to ids; the first character outside the vocabulary is an error naming where
 * it is (`where` is the file, `line:column` is added) and what the vocabulary holds.
 */
export function encodeText(text: string, vocab: string[], where: string, fix: string): Int32Array {
  const ids = new Map(vocab.map((c, i) => [c, i]));
  const cs = chars(text);
  const out = new Int32Array(cs.length);
  let line = 1;
  let col = 1;
  for (let i = 0; i < cs.length; i++) {
    const id = ids.get(cs[i]);
    if (id === undefined) {
      const ctx = cs.slice(Math.max(0, i - 20), i + 1).join('').split('\n').pop();
      throw new HepolyError(
        `${where}:${line}:${col}: character ${show(cs[i])} is not in the vocabulary (${vocab.length} characters: ${JSON.stringify(vocab.join(''))}), after "${ctx?.slice(0, -1)}". ${fix}`,
      );
    }
    out[i] = id;
    if (cs[i] === '\n') {
      line++;
      col = 1;
    } else col++;
  }
  return out;
}

/** Windows [start + i - context, start + i) -> ids[start + i] for i = context, context + stride, ... < len. */
function windows(ids: Int32Array, start: number, len: number, context: number, stride: number, limit?: number): Split {
  const positions: number[] = [];
  for (let i = context; i < len; i += stride) positions.push(start + i);
  let pick = positions;
  if (limit !== undefined && limit < positions.length) {
    // evenly spaced, so a small limit still covers the whole part
    pick = Array.from({ length: limit }, (_, k) => positions[Math.floor((k * positions.length) / limit)]);
  }
  const count = pick.length;
  const x = new Float32Array(count * context);
  const y = new Int32Array(count);
  pick.forEach((end, r) => {
    for (let j = 0; j < context; j++) x[r * context + j] = ids[end - context + j];
    y[r] = ids[end];
  });
  return { x, y, count };
}

export async function loadTextData(cfg: TextDataConfig, opts: LoadOptions): Promise<LoadedData> {
  const rf = opts.recipeFile;
  const { path, ref } = resolveDataPath(cfg.path, 'data.path', rf, opts.dataRoots);
  const text = readFileSync(path, 'utf8').replace(/\r\n/g, '\n');
  const saved = opts.preprocess;
  const field = rf ? `${rf}: data` : 'data';
  let vocab: string[];
  if (saved) {
    if (saved.inputShape.length !== 1 || saved.inputShape[0] !== cfg.context) {
      throw new HepolyError(`${field}.context: the checkpoint was trained on windows of shape [${saved.inputShape.join(', ')}], the recipe asks for ${cfg.context} characters. Use the recipe the checkpoint was trained with`);
    }
    vocab = saved.labels;
  } else if (cfg.vocab !== undefined) {
    vocab = chars(cfg.vocab);
    const dup = vocab.find((c, i) => vocab.indexOf(c) !== i);
    if (dup !== undefined) throw new HepolyError(`${field}.vocab: character ${show(dup)} appears twice. List each character once`);
  } else {
    vocab = textVocabulary(text);
  }
  const fix = saved
    ? 'The checkpoint can only read text made of its vocabulary: remove or replace the character, or retrain on this text'
    : cfg.vocab !== undefined
      ? `Add it to data.vocab${rf ? ` in ${rf}` : ''}, or remove it from the text`
      : 'Remove or replace it';
  const ids = encodeText(text, vocab, sourceLabel(ref).replace(/ \(.*\)$/, ''), fix);
  const n = ids.length;
  const nTest = Math.round(cfg.split.test * n);
  const nVal = Math.round(cfg.split.validation * n);
  const nTrain = n - nVal - nTest;
  const C = cfg.context;
  for (const [name, len] of [
    ['train', nTrain],
    ['validation', nVal],
    ['test', nTest],
  ] as const) {
    if (len <= C && !(name !== 'train' && len === 0)) {
      throw new HepolyError(
        `${field}.context: the ${name} part of ${ref.file} has ${len} characters, not more than the context of ${C}, so it holds no sample. Use a shorter context, a longer text, or a larger data.split.${name === 'train' ? 'validation/test' : name} fraction`,
      );
    }
  }
  const train = windows(ids, 0, nTrain, C, cfg.stride, cfg.limit);
  const validation = nVal ? windows(ids, nTrain, nVal, C, 1, cfg.test_limit) : { x: new Float32Array(0), y: new Int32Array(0), count: 0 };
  const test = nTest ? windows(ids, nTrain + nVal, nTest, C, 1, cfg.test_limit) : null;
  return {
    train,
    validation,
    test,
    preprocess: { labels: vocab, inputShape: [C], normalize: { kind: 'none' } },
    sources: [path],
  };
}

/** The vocabulary and context of a language-model checkpoint's preprocess. */
export function textPreprocess(p: { labels: string[]; inputShape: number[] }): TextPreprocess {
  return { vocab: p.labels, context: p.inputShape[0] };
}
