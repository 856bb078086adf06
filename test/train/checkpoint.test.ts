import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadCheckpoint, saveCheckpoint, type CheckpointContents } from '../../src/train/checkpoint.js';
import { setCrashHook } from '../../src/util/atomic-dir.js';
import { buildGraph } from '../../src/models/build.js';
import { initWeights } from '../../src/models/tf-interpreter.js';
import { RecipeSchema } from '../../src/recipe/schema.js';
import { HepolyError } from '../../src/util/errors.js';
import { tempDir } from '../helpers/tmp.js';

function contents(seed: number, epochs: number): CheckpointContents {
  const recipe = RecipeSchema.parse({
    name: 'ck',
    seed,
    data: { source: 'csv', path: 'x.csv', label: 'y' },
    model: { kind: 'mlp', hidden: [4], batchnorm: true },
  });
  const graph = buildGraph(recipe.model, [3], 2);
  return {
    graph,
    weights: initWeights(graph, seed),
    recipe,
    preprocess: { labels: ['a', 'b'], inputShape: [3], normalize: { kind: 'none' } },
    ranges: { input: { min: 0, max: 1, p001: 0, p999: 1 }, activations: { act1: { min: -2, max: 3, p001: -1, p999: 2 } } },
    metrics: Array.from({ length: epochs }, (_, i) => ({ epoch: i + 1, loss: 1 / (i + 1), accuracy: 0.5, val_loss: 1, val_accuracy: 0.5, lr: 0.001, samples_per_s: 100, seconds: 1 })),
    state: { epochs_done: epochs, complete: true, backend: 'cpu', seed },
    optimizer: { names: ['iter', 'm'], shapes: [[], [2, 2]], data: [Float32Array.of(3), Float32Array.of(1, 2, 3, 4)] },
    summary: { ok: true },
  };
}

describe('checkpoints', () => {
  const tmp = tempDir();
  after(() => {
    setCrashHook(null);
    tmp.cleanup();
  });

  it('round trip keeps graph, weights, recipe, ranges, metrics and optimizer state', () => {
    const dir = join(tmp.path, 'rt');
    const c = contents(1, 3);
    saveCheckpoint(dir, c);
    const back = loadCheckpoint(dir);
    expect(back.graph).to.deep.equal(c.graph);
    expect([...back.weights.keys()]).to.deep.equal([...c.weights.keys()]);
    for (const [k, w] of c.weights) expect(Array.from(back.weights.get(k)!.data)).to.deep.equal(Array.from(w.data));
    expect(back.recipe).to.deep.equal(c.recipe);
    expect(back.ranges).to.deep.equal(c.ranges);
    expect(back.metrics.map((m) => m.epoch)).to.deep.equal([1, 2, 3]);
    expect(back.metrics[2].loss).to.be.closeTo(1 / 3, 1e-5);
    expect(Array.from(back.optimizer!.data[1])).to.deep.equal([1, 2, 3, 4]);
    expect(back.state.epochs_done).to.equal(3);
  });

  for (const step of ['written', 'moved-old', 'moved-new'] as const) {
    it(`a crash after step "${step}" leaves the old or the new checkpoint, complete`, () => {
      const dir = join(tmp.path, `crash-${step}`);
      saveCheckpoint(dir, contents(1, 1));
      setCrashHook((s) => {
        if (s === step) throw new Error('simulated crash');
      });
      expect(() => saveCheckpoint(dir, contents(2, 2))).to.throw('simulated crash');
      setCrashHook(null);
      const back = loadCheckpoint(dir);
      expect([1, 2]).to.include(back.state.epochs_done);
      expect(back.recipe.seed).to.equal(back.state.epochs_done); // old (seed 1, 1 epoch) or new (seed 2, 2 epochs), never mixed
      // loading never deletes (a trainer may be writing); the next save cleans up
      saveCheckpoint(dir, contents(3, 3));
      expect(loadCheckpoint(dir).state.epochs_done).to.equal(3);
      expect(readdirSync(tmp.path).filter((f) => f.startsWith(`crash-${step}.`))).to.deep.equal([]);
    });
  }

  // a real SIGKILL at each instant of the write (HEPOLY_TEST_KILL_AT_WRITE), not at a random time
  for (const step of ['written', 'moved-old', 'moved-new'] as const) {
    it(`kill -9 after write step "${step}": a reader finds a complete checkpoint, the next save removes the leftovers`, async function () {
      this.timeout(60000);
      const dir = join(tmp.path, `killed-${step}`);
      saveCheckpoint(dir, contents(1, 1));
      const script = `
        import { saveCheckpoint } from ${JSON.stringify(new URL('../../src/train/checkpoint.ts', import.meta.url).href)};
        import { buildGraph } from ${JSON.stringify(new URL('../../src/models/build.ts', import.meta.url).href)};
        import { initWeights } from ${JSON.stringify(new URL('../../src/models/tf-interpreter.ts', import.meta.url).href)};
        import { RecipeSchema } from ${JSON.stringify(new URL('../../src/recipe/schema.ts', import.meta.url).href)};
        const recipe = RecipeSchema.parse({ name: 'ck', seed: 2, data: { source: 'csv', path: 'x.csv', label: 'y' }, model: { kind: 'mlp', hidden: [4] } });
        const graph = buildGraph(recipe.model, [3], 2);
        saveCheckpoint(${JSON.stringify(dir)}, { graph, weights: initWeights(graph, 2), recipe, preprocess: { labels: ['a', 'b'], inputShape: [3], normalize: { kind: 'none' } },
          ranges: null, metrics: [], state: { epochs_done: 2, complete: false, backend: 'cpu', seed: 2 }, optimizer: null, summary: {} });`;
      const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
        stdio: ['ignore', 'ignore', 'inherit'],
        env: { ...process.env, HEPOLY_TEST_KILL_AT_WRITE: step },
      });
      const signal = await new Promise((res) => child.once('exit', (_code, sig) => res(sig)));
      expect(signal, 'the child must have been killed inside the write').to.equal('SIGKILL');
      const siblings = readdirSync(tmp.path).filter((f) => f.startsWith(`killed-${step}.`));
      expect(siblings.length, 'a kill inside the write leaves a tmp or prev sibling').to.be.greaterThan(0);
      const back = loadCheckpoint(dir);
      expect([1, 2]).to.include(back.state.epochs_done);
      expect(back.recipe.seed).to.equal(back.state.epochs_done);
      if (step !== 'written') expect(back.state.epochs_done, 'the new copy was complete: it wins').to.equal(2);
      saveCheckpoint(dir, contents(3, 3));
      expect(readdirSync(tmp.path).filter((f) => f.startsWith(`killed-${step}.`))).to.deep.equal([]);
      expect(loadCheckpoint(dir).state.epochs_done).to.equal(3);
    });
  }

  it('a truncated weights file is refused with a clear message', () => {
    const dir = join(tmp.path, 'trunc');
    saveCheckpoint(dir, contents(1, 1));
    truncateSync(join(dir, 'weights.bin'), 10);
    expect(() => loadCheckpoint(dir)).to.throw(HepolyError, /weights\.bin has 10 bytes, expected \d+ \(truncated/);
  });

  it('a corrupted file (same size) fails its checksum', () => {
    const dir = join(tmp.path, 'corrupt');
    saveCheckpoint(dir, contents(1, 1));
    const p = join(dir, 'ranges.json');
    writeFileSync(p, readFileSync(p, 'utf8').replace('"max": 3', '"max": 9'));
    expect(() => loadCheckpoint(dir)).to.throw(HepolyError, /ranges\.json does not match its checksum/);
  });

  it('a missing model.json or directory names what to do', () => {
    const dir = join(tmp.path, 'nomodel');
    saveCheckpoint(dir, contents(1, 1));
    writeFileSync(join(dir, 'model.json'), '{ not json');
    expect(() => loadCheckpoint(dir)).to.throw(HepolyError, /model\.json is not valid JSON.*hepoly train/);
    expect(() => loadCheckpoint(join(tmp.path, 'nothing-here'))).to.throw(HepolyError, /checkpoint not found/);
    expect(existsSync(join(tmp.path, 'nothing-here'))).to.equal(false);
  });
});
