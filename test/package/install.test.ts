import { expect } from 'chai';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tempDir } from '../helpers/tmp.js';
import { keepDependencies, seedDependencies } from './deps-cache.js';

/**
 * The package as a user gets it: `npm pack` of the repository, a plain `npm install <tarball>`
 * in a fresh project outside it (no .npmrc, no environment switch), then `import('hepoly')` by
 * name. The install must not need onnxruntime-node (an optional peer dependency whose install
 * script downloads CUDA libraries): it is not installed, and an ONNX teacher says how to add it.
 * Packages come from npm's cache (--prefer-offline); the registry is asked only for what is missing.
 * After the first run, the project starts with the dependencies of that from-scratch install
 * hard-linked in (deps-cache.ts; HEPOLY_PACKAGE_TEST_FRESH=1 installs from scratch every time).
 */

const root = fileURLToPath(new URL('../../', import.meta.url));

function run(cmd: string, args: string[], cwd: string, env: Record<string, string> = {}): SpawnSyncReturns<string> {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '', ...env }, timeout: 300000 });
  if (r.error) throw r.error;
  return r;
}

const npm = (args: string[], cwd: string) => run('npm', [...args, '--no-audit', '--no-fund'], cwd, { npm_config_update_notifier: 'false' });

/** what the consumer runs: train the shipped quickstart for one epoch, read it back, evaluate it, try an ONNX teacher */
const CONSUMER_SCRIPT = `
import { writeFileSync } from 'node:fs';
import * as hepoly from 'hepoly';
const { train, evaluate, loadCheckpoint, HepolyError } = hepoly;
const trained = await train('recipes/quickstart.yaml', { set: { 'train.epochs': 1 }, out: 'ckpt/qs' });
const ckpt = loadCheckpoint(trained.checkpoint);
const evaluated = await evaluate(trained.checkpoint);
let onnx = null;
try {
  await train('recipes/quickstart.yaml', { set: { 'train.epochs': 1, 'distill.teacher': 'teacher.onnx' }, out: 'ckpt/kd' });
} catch (e) {
  onnx = { hepolyError: e instanceof HepolyError, message: e.message };
}
writeFileSync('result.json', JSON.stringify({
  exports: Object.keys(hepoly).sort(),
  trained, evaluated, onnx,
  labels: ckpt.preprocess.labels,
  nodes: ckpt.graph.nodes.map((n) => n.name),
}));
`;

/** a consumer's TypeScript: every line must type-check against dist/*.d.ts, the ts-expect-error lines must not */
const CONSUMER_TYPES = `
import { train, evaluate, heValidate, loadCheckpoint, type TrainReport, type EvaluateResult, type HeValidateResult, type Checkpoint } from 'hepoly';
export async function use(): Promise<number> {
  const run: TrainReport = await train('recipes/quickstart.yaml', { set: { 'train.epochs': 1 }, out: 'ckpt/t', onEpoch: (row) => row.val_accuracy });
  const held: EvaluateResult = await evaluate(run.checkpoint);
  const he: HeValidateResult = await heValidate(run.checkpoint, { samples: 2, packing: 'sample', mode: 'simulate' });
  const ckpt: Checkpoint = loadCheckpoint(run.checkpoint);
  // @ts-expect-error: not an option of train
  await train('recipes/quickstart.yaml', { epochz: 1 });
  // @ts-expect-error: accuracy is a number
  const s: string = held.accuracy;
  return held.accuracy + he.agreement + ckpt.graph.nodes.length + s.length;
}
`;

describe('npm package: pack, install into a fresh project, import by name', function () {
  this.timeout(600000);
  const tmp = tempDir('hepoly-package-');
  after(() => tmp.cleanup());
  const consumer = join(tmp.path, 'consumer');
  let tarball = '';
  let install: SpawnSyncReturns<string>;
  let seeded = false;

  before(function () {
    if (!existsSync(join(root, 'dist', 'index.js'))) {
      throw new Error('dist/index.js is missing: build first with `npx tsc -p tsconfig.json` (npm test does)');
    }
    // --ignore-scripts: pack the dist/ built here; `prepare` would rebuild it under other running tests
    const pack = npm(['pack', '--ignore-scripts', '--json', '--pack-destination', tmp.path], root);
    expect(pack.status, pack.stderr).to.equal(0);
    tarball = join(tmp.path, (JSON.parse(pack.stdout) as { filename: string }[])[0].filename);
    mkdirSync(consumer);
    writeFileSync(join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true, type: 'module' }));
    seeded = seedDependencies(root, consumer);
    install = npm(['install', '--prefer-offline', tarball], consumer);
    if (install.status === 0 && !seeded) keepDependencies(root, consumer);
  });

  it('the tarball holds the built library, the CLI, recipes and data, not the sources or tests', () => {
    const list = run('tar', ['-tzf', tarball], tmp.path).stdout.split('\n');
    for (const f of ['package/dist/index.js', 'package/dist/index.d.ts', 'package/dist/api/train.js', 'package/bin/hepoly.js', 'package/recipes/quickstart.yaml', 'package/datasets/breast-cancer-wisconsin.csv']) {
      expect(list, f).to.include(f);
    }
    expect(list.filter((f) => /^package\/(src|test|node_modules)\//.test(f))).to.deep.equal([]);
  });

  it('a plain `npm install <tarball>` succeeds without onnxruntime-node and without npm config warnings', () => {
    expect(install.status, `${install.stdout}\n${install.stderr}`).to.equal(0);
    if (seeded) console.log('      (dependencies seeded from the last from-scratch install: HEPOLY_PACKAGE_TEST_FRESH=1 repeats it)');
    expect(install.stderr).to.not.match(/Unknown (project|cli|env) config/);
    expect(existsSync(join(consumer, 'node_modules', 'hepoly', 'dist', 'index.js'))).to.equal(true);
    expect(existsSync(join(consumer, 'node_modules', 'onnxruntime-node')), 'the optional peer dependency is not installed').to.equal(false);
  });

  it("import('hepoly') by name: train, loadCheckpoint and evaluate run; an ONNX teacher names the install line", () => {
    writeFileSync(join(consumer, 'use.mjs'), CONSUMER_SCRIPT);
    writeFileSync(join(consumer, 'teacher.onnx'), 'not needed: onnxruntime-node is asked for first');
    const r = run(process.execPath, ['use.mjs'], consumer);
    expect(r.status, `${r.stdout}\n${r.stderr}`).to.equal(0);
    const out = JSON.parse(readFileSync(join(consumer, 'result.json'), 'utf8')) as Record<string, any>;
    for (const name of ['train', 'evaluate', 'heValidate', 'plan', 'prune', 'loadCheckpoint', 'compile', 'HEClient', 'HEServer', 'HepolyError']) expect(out.exports, name).to.include(name);
    expect(out.trained).to.include({ epochs: 1, checkpoint: join(consumer, 'ckpt', 'qs') });
    expect(out.trained.val_accuracy).to.be.greaterThan(0.6);
    expect(out.evaluated).to.include({ split: 'validation', samples: 113, checkpoint: join(consumer, 'ckpt', 'qs') });
    expect(out.evaluated.accuracy).to.be.closeTo(out.trained.val_accuracy, 1e-6);
    expect(out.labels).to.deep.equal(['benign', 'malignant']);
    expect(out.nodes.length).to.be.greaterThan(2);
    expect(out.onnx, 'an ONNX teacher without onnxruntime-node must fail').to.not.equal(null);
    expect(out.onnx.hepolyError).to.equal(true);
    expect(out.onnx.message).to.contain('distill.teacher').and.contain('ONNXRUNTIME_NODE_INSTALL=skip npm install onnxruntime-node');
  });

  it("the types resolve through the exports map: tsc accepts the API's use and rejects a wrong option", () => {
    writeFileSync(join(consumer, 'types.ts'), CONSUMER_TYPES);
    const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
    const r = run(process.execPath, [tsc, '--noEmit', '--strict', '--skipLibCheck', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022', 'types.ts'], consumer);
    expect(r.status, r.stdout).to.equal(0);
  });

  it('the CLI works from the installed package (npx hepoly eval --json)', () => {
    const r = run('npx', ['--no-install', 'hepoly', 'eval', 'ckpt/qs', '--json'], consumer);
    expect(r.status, r.stderr).to.equal(0);
    const json = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
    expect(json).to.include({ split: 'validation', samples: 113 });
  });
});
