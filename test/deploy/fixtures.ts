import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { hepoly } from '../helpers/cli.js';

/**
 * Tiny deployable models for the deploy tests: a polynomial MLP and a polynomial CNN trained
 * for two epochs on the breast-cancer CSV (the CNN reads its 30 features as a 5x6 image), then
 * exported with the real CLI. Seconds each on 2 cores.
 */

const root = fileURLToPath(new URL('../../', import.meta.url));
const bin = join(root, 'bin/hepoly.js');

export const BREAST_CANCER = join(root, 'datasets/breast-cancer-wisconsin.csv');

export function trainTinyMlp(dir: string): string {
  const out = join(dir, 'ck-mlp');
  const r = hepoly(['train', 'recipes/quickstart.yaml', '--set', 'train.epochs=2', '--set', 'model.hidden=[8]', '--out', out]);
  expect(r.code, r.stderr).to.equal(0);
  return out;
}

export function trainTinyCnn(dir: string): string {
  const recipe = join(dir, 'tiny-cnn.yaml');
  writeFileSync(
    recipe,
    `name: tiny-cnn
seed: 3
data:
  source: csv
  path: ${BREAST_CANCER}
  label: diagnosis
  shape: [5, 6, 1]
  normalize: standard
  split: {validation: 0.2}
model:
  kind: cnn
  activation: {kind: quad}
  layers:
    - {type: conv, filters: 2, kernel: 3, stride: 1, padding: same}
    - {type: activation}
    - {type: avgpool, size: 2}
    - {type: flatten}
    - {type: dense}
train:
  epochs: 2
  batch: 32
  optimizer: {kind: adam, lr: 0.003}
`,
  );
  const out = join(dir, 'ck-cnn');
  const r = hepoly(['train', recipe, '--out', out]);
  expect(r.code, r.stderr).to.equal(0);
  return out;
}

export function exportHe(checkpoint: string, out: string): Record<string, unknown> {
  const r = hepoly(['export', checkpoint, '--format', 'he', '--out', out, '--json']);
  expect(r.code, r.stderr).to.equal(0);
  expect(r.json, r.stdout).to.not.equal(null);
  return r.json!;
}

/** The first rows of the data set, as a user would pass them to `hepoly predict --input`. */
/** A tiny polynomial ViT (power-softmax, batchnorm, quad) on 16 breast-cancer features read as a 4x4 image: batch packing only. */
export function trainTinyVit(dir: string): string {
  const recipe = join(dir, 'tiny-vit.yaml');
  const features = readFileSync(BREAST_CANCER, 'utf8').split('\n')[0].split(',').slice(0, 16);
  writeFileSync(
    recipe,
    `name: tiny-vit
seed: 3
data: {source: csv, path: ${BREAST_CANCER}, label: diagnosis, features: [${features.join(', ')}], shape: [4, 4, 1], normalize: standard, split: {validation: 0.2}}
model: {kind: transformer, task: classify, patch: 2, layers: 1, dim: 2, heads: 1, mlp_ratio: 1, attention: {kind: power-softmax, p: 2}, norm: batchnorm, activation: {kind: quad}}
train: {epochs: 2, batch: 32, optimizer: {kind: adam, lr: 0.01}}
`,
  );
  const out = join(dir, 'ck-vit');
  const r = hepoly(['train', recipe, '--out', out]);
  expect(r.code, r.stderr).to.equal(0);
  return out;
}

export function sampleCsv(dir: string, rows: number): string {
  const lines = readFileSync(BREAST_CANCER, 'utf8').split('\n').filter((l) => l.trim());
  // the head of the file is all one class: take rows from both ends
  const pick = [lines[0], ...lines.slice(1, 1 + Math.ceil(rows / 2)), ...lines.slice(-Math.floor(rows / 2))];
  const file = join(dir, `input-${rows}.csv`);
  writeFileSync(file, `${pick.join('\n')}\n`);
  return file;
}

/** `hepoly serve` as its own process on a free port (or the `--port` in args); resolves once it prints its URL. */
export function serveProcess(args: string[]): Promise<{ url: string; child: ChildProcess; output: () => string }> {
  const port = args.includes('--port') ? [] : ['--port', '0'];
  const child = spawn(process.execPath, [bin, 'serve', ...args, ...port], { cwd: root, env: { ...process.env, NODE_OPTIONS: '' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`hepoly serve printed no URL within 60 s:\n${out}`)), 60000);
    const onData = (d: Buffer) => {
      out += d.toString();
      const m = /serving .* on (http:\/\/[0-9.]+:\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ url: m[1], child, output: () => out });
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`hepoly serve exited (${code}) before serving:\n${out}`));
    });
  });
}

export function stopProcess(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill(signal);
  });
}

export interface TinyArtifacts {
  dir: string;
  mlp: { checkpoint: string; server: string; client: string };
  cnn: { checkpoint: string; server: string; client: string };
}

let shared: Promise<TinyArtifacts> | null = null;

/** Trained and exported once per mocha run, shared by the deploy test files; removed at exit. */
export function tinyArtifacts(): Promise<TinyArtifacts> {
  shared ??= (async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hepoly-deploy-'));
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    const mlp = trainTinyMlp(dir);
    exportHe(mlp, join(dir, 'mlp'));
    const cnn = trainTinyCnn(dir);
    exportHe(cnn, join(dir, 'cnn'));
    return {
      dir,
      mlp: { checkpoint: mlp, server: join(dir, 'mlp/server'), client: join(dir, 'mlp/client') },
      cnn: { checkpoint: cnn, server: join(dir, 'cnn/server'), client: join(dir, 'cnn/client') },
    };
  })();
  return shared;
}
