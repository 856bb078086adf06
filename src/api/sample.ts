import * as tf from '@tensorflow/tfjs-core';
import { loadCheckpoint } from '../train/checkpoint.js';
import { toParams } from '../train/evaluate.js';
import { initBackend } from '../train/backend.js';
import { forward } from '../models/tf-interpreter.js';
import { shortPath } from '../util/paths.js';
import { chars, PAD_CHAR, textPreprocess } from '../data/index.js';
import { HepolyError } from '../util/errors.js';
import { makeRng } from '../util/rng.js';
import { integerFlag } from '../util/flags.js';

export interface SampleOptions {
  checkpoint: string;
  prompt: string;
  length?: number;
  temperature?: number;
  seed?: number;
  backend?: string;
}

export interface SampleResult {
  checkpoint: string;
  backend: string;
  prompt: string;
  generated: string;
  length: number;
  temperature: number;
  seed: number;
}

/** one model call per character: a million takes minutes, more is a typo */
const MAX_SAMPLE_LENGTH = 1_000_000;

const show = (c: string) => (c === '\n' ? '"\\n"' : JSON.stringify(c));

/**
 * Checks a prompt against a language model's vocabulary and context and returns its ids,
 * left-padded to the context with the pad character (a space).
 */
export function promptWindow(prompt: string, vocab: string[], context: number): number[] {
  const cs = chars(prompt);
  if (cs.length > context) {
    throw new HepolyError(
      `--prompt: the prompt has ${cs.length} characters, more than the model's context of ${context} (it reads ${context} characters to predict the next). Give at most ${context} characters, e.g. its last ${context}: ${JSON.stringify(cs.slice(-context).join(''))}`,
      { exitCode: 2 },
    );
  }
  const ids = new Map(vocab.map((c, i) => [c, i]));
  const bad = cs.findIndex((c) => !ids.has(c));
  if (bad >= 0) {
    throw new HepolyError(
      `--prompt: character ${show(cs[bad])} (position ${bad + 1}) is not in the model's vocabulary of ${vocab.length} characters: ${JSON.stringify(vocab.join(''))}. Use only those characters`,
      { exitCode: 2 },
    );
  }
  const pad = ids.get(PAD_CHAR) ?? 0;
  return [...new Array<number>(context - cs.length).fill(pad), ...cs.map((c) => ids.get(c)!)];
}

/** Draws an index from logits / temperature (argmax at temperature 0). */
export function sampleIndex(logits: ArrayLike<number>, temperature: number, u: number): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  if (temperature <= 0) return best;
  const w = Array.from(logits, (l) => Math.exp((l - logits[best]) / temperature));
  const total = w.reduce((a, b) => a + b, 0);
  let acc = 0;
  for (let i = 0; i < w.length; i++) {
    acc += w[i] / total;
    if (u < acc) return i;
  }
  return w.length - 1;
}

/** Generates `length` characters after `prompt` with a character-level language model checkpoint. */
export async function sample(a: SampleOptions): Promise<SampleResult> {
  const ckpt = loadCheckpoint(a.checkpoint);
  if (ckpt.recipe.data.source !== 'text' || ckpt.graph.inputShape.length !== 1) {
    throw new HepolyError(
      `${shortPath(ckpt.dir)}: not a language model (it was trained on data.source: ${ckpt.recipe.data.source}). hepoly sample needs a checkpoint of a text recipe, e.g. \`hepoly train recipes/charlm-poly.yaml\` then \`hepoly sample checkpoints/charlm-poly --prompt "..."\``,
    );
  }
  const length = integerFlag('--length', a.length ?? 200, { min: 0, max: MAX_SAMPLE_LENGTH });
  const temperature = a.temperature ?? 0.8;
  const seed = integerFlag('--seed', a.seed ?? 0, { min: 0, max: 2 ** 31 - 1 });
  if (!(temperature >= 0)) throw new HepolyError(`--temperature: expected a number >= 0 (0: always the most likely character), found ${a.temperature}`, { exitCode: 2 });
  const { vocab, context } = textPreprocess(ckpt.preprocess);
  const window = promptWindow(a.prompt, vocab, context);
  const backend = await initBackend(a.backend);
  const rng = makeRng(seed, 'sample');
  const params = toParams(ckpt.weights);
  let generated = '';
  try {
    for (let i = 0; i < length; i++) {
      const logits = tf.tidy(() => forward(ckpt.graph, params, tf.tensor2d(window, [1, context]), { training: false }).logits.dataSync());
      const id = sampleIndex(logits, temperature, rng.next());
      generated += vocab[id];
      window.shift();
      window.push(id);
    }
  } finally {
    for (const t of params.values()) t.dispose();
  }
  return { checkpoint: ckpt.dir, backend, prompt: a.prompt, generated, length, temperature, seed };
}

