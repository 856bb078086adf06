import { readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { loadData } from '../../src/data/index.js';
import type { DataConfig } from '../../src/recipe/schema.js';

/** The committed fixtures (scripts/make_onnx_fixtures.py, scripts/make_poly_cnn.py). */
export const FIXTURES = 'test/fixtures/onnx';
export const DATA_RECIPE = `${FIXTURES}/fmnist-small.yaml`;

export interface FixtureEntry {
  file: string;
  layout: 'nchw' | 'nhwc';
  opset: number;
  covers?: string[];
  logits?: number[][];
  refused?: string;
  why?: string;
}

export function fixtureList(): FixtureEntry[] {
  const list = JSON.parse(readFileSync(`${FIXTURES}/fixtures.json`, 'utf8')) as { fixtures: FixtureEntry[] };
  const polyCnn = JSON.parse(readFileSync(`${FIXTURES}/poly_cnn.onnx.expected.json`, 'utf8')) as { logits: number[][] };
  return [{ file: 'poly_cnn.onnx', layout: 'nchw', opset: 17, covers: ['Conv', 'Mul', 'Pad', 'AveragePool', 'Constant', 'Add', 'Flatten', 'Gemm'], logits: polyCnn.logits }, ...list.fixtures];
}

/** The first 8 Fashion-MNIST test images, pixel/255, NHWC: what the fixtures' expected logits were computed on. */
export async function firstTestImages(): Promise<{ x: Float32Array; count: number }> {
  const cfg: DataConfig = {
    source: 'idx',
    train: { images: 'datasets/fashion-mnist/t10k-images-idx3-ubyte.gz', labels: 'datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz' },
    test: { images: 'datasets/fashion-mnist/t10k-images-idx3-ubyte.gz', labels: 'datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz' },
    normalize: { scale: 1 / 255, shift: 0 },
    split: { validation: 0.1 },
    limit: 16,
    test_limit: 8,
  };
  const data = await loadData(cfg, { seed: 1 });
  return { x: data.test!.x, count: data.test!.count };
}

/**
 * A python3 with the onnx package (Debian python3-onnx), for the ONNX checker; null when none.
 * The PATH python3 may be another interpreter (pyenv) than Debian's, so both are tried.
 */
export function pythonWithOnnx(): string | null {
  for (const py of ['python3', '/usr/bin/python3']) {
    const r = spawnSync(py, ['-c', 'import onnx'], { encoding: 'utf8' });
    if (r.status === 0) return py;
  }
  return null;
}

export const INSTALL_ONNX = 'the ONNX checker needs python3-onnx: apt-get install -y python3-onnx (Debian), or pip install onnx';
