import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import {
  isGzip,
  parseIdxImages,
  parseIdxLabels,
  readIdxImages,
  readIdxLabels,
  readIdxPair,
} from '../../src/data/idx.js';
import type { SourceRef } from '../../src/data/csv.js';
import { HepolyError } from '../../src/util/errors.js';

const RECIPE = 'recipes/test-recipe.yaml';
const ref = (file: string, field = 'data.train.images'): SourceRef => ({ file, field, recipeFile: RECIPE });

/** An IDX images file: n images of r x c with pixel (k) = (k * 7 + i) & 255 for image i. */
function idxImages(n: number, r: number, c: number): Buffer {
  const buf = Buffer.alloc(16 + n * r * c);
  buf.writeUInt32BE(0x803, 0);
  buf.writeUInt32BE(n, 4);
  buf.writeUInt32BE(r, 8);
  buf.writeUInt32BE(c, 12);
  for (let i = 0; i < n; i++) for (let k = 0; k < r * c; k++) buf[16 + i * r * c + k] = (k * 7 + i) & 255;
  return buf;
}

function idxLabels(values: number[]): Buffer {
  const buf = Buffer.alloc(8 + values.length);
  buf.writeUInt32BE(0x801, 0);
  buf.writeUInt32BE(values.length, 4);
  values.forEach((v, i) => (buf[8 + i] = v));
  return buf;
}

async function expectError(fn: () => unknown, parts: string[]): Promise<string> {
  let caught: unknown;
  try {
    await fn();
  } catch (e) {
    caught = e;
  }
  expect(caught, 'expected a HepolyError').to.be.instanceOf(HepolyError);
  const msg = (caught as Error).message;
  for (const p of parts) expect(msg, msg).to.include(p);
  return msg;
}

describe('data/idx', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'hepoly-idx-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  function fixture(name: string, data: Uint8Array): string {
    const p = join(dir, name);
    writeFileSync(p, data);
    return p;
  }

  it('reads the Fashion-MNIST test files: 10000 images of 28x28, labels 0-9', async () => {
    const img = await readIdxImages('datasets/fashion-mnist/t10k-images-idx3-ubyte.gz', ref('t10k-images'));
    const lab = await readIdxLabels('datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz', ref('t10k-labels', 'data.train.labels'));
    expect(img.count).to.equal(10000);
    expect([img.rows, img.cols]).to.deep.equal([28, 28]);
    expect(img.data.length).to.equal(10000 * 28 * 28);
    expect(lab.count).to.equal(10000);
    const perClass = new Array(10).fill(0);
    for (const v of lab.data) perClass[v]++;
    expect(perClass).to.deep.equal(new Array(10).fill(1000));
    expect(Math.max(...img.data.subarray(0, 784))).to.be.greaterThan(100);
    expect(lab.data[0]).to.equal(9); // the first test image is an ankle boot
  });

  it('parses raw and gzip IDX identically (detected by magic bytes, not the name)', async () => {
    const raw = idxImages(5, 3, 4);
    const gz = gzipSync(raw);
    expect(isGzip(raw)).to.equal(false);
    expect(isGzip(gz)).to.equal(true);
    const a = parseIdxImages(raw, ref('raw'));
    const b = parseIdxImages(gz, ref('gz'));
    expect([a.count, a.rows, a.cols]).to.deep.equal([5, 3, 4]);
    expect(Buffer.from(b.data).equals(Buffer.from(a.data))).to.equal(true);
    expect(a.data[12 + 1]).to.equal(1 * 7 + 1);
    // a gzip file named without .gz and a raw file named .gz
    const p1 = fixture('images-raw.gz', raw);
    const p2 = fixture('images-gz', gz);
    const c = await readIdxImages(p1, ref(p1));
    const d = await readIdxImages(p2, ref(p2));
    expect(Buffer.from(c.data).equals(Buffer.from(d.data))).to.equal(true);
    const l = parseIdxLabels(gzipSync(idxLabels([3, 1, 4, 1, 5])), ref('l'));
    expect(Array.from(l.data)).to.deep.equal([3, 1, 4, 1, 5]);
  });

  it('errors on a truncated raw file, naming the file, field and sizes', async () => {
    const full = idxImages(4, 2, 2);
    const p = fixture('trunc-images', full.subarray(0, full.length - 3));
    await expectError(() => readIdxImages(p, ref(p)), [p, 'data.train.images', RECIPE, `expected ${full.length} bytes`, `found ${full.length - 3} bytes`, 'truncated', 'download it again']);
    const h = fixture('trunc-header', full.subarray(0, 10));
    await expectError(() => readIdxImages(h, ref(h)), [h, '16-byte IDX header', 'truncated']);
  });

  it('errors on a truncated gzip file', async () => {
    const gz = gzipSync(idxImages(20, 8, 8));
    const p = fixture('trunc.gz', gz.subarray(0, gz.length >> 1));
    await expectError(() => readIdxImages(p, ref(p)), [p, 'data.train.images', 'decompress', 'truncated or corrupt', 'download it again']);
  });

  it('errors on trailing bytes', async () => {
    const p = fixture('long-labels', Buffer.concat([idxLabels([1, 2]), Buffer.from([0, 0])]));
    await expectError(() => readIdxLabels(p, ref(p, 'data.train.labels')), [p, 'data.train.labels', 'expected 10 bytes', 'found 12', 'trailing']);
  });

  it('errors on a bad magic: swapped files and non-IDX files', async () => {
    const lab = fixture('labels-as-images', idxLabels([1, 2, 3]));
    await expectError(() => readIdxImages(lab, ref(lab)), [lab, 'data.train.images', 'magic 0x00000803', 'found magic 0x00000801', 'labels file', 'swapped']);
    const img = fixture('images-as-labels', gzipSync(idxImages(1, 2, 2)));
    await expectError(() => readIdxLabels(img, ref(img, 'data.train.labels')), [img, 'data.train.labels', 'found magic 0x00000803', 'swapped']);
    const html = fixture('page.html', Buffer.from('<html><body>not found</body></html>'));
    await expectError(() => readIdxImages(html, ref(html)), [html, 'not an IDX file', 'Point data.train.images in ' + RECIPE]);
    const ints = Buffer.from(idxImages(1, 2, 2));
    ints[2] = 0x0c; // float data
    const f = fixture('floats', ints);
    await expectError(() => readIdxImages(f, ref(f)), [f, 'only unsigned bytes']);
  });

  it('errors when images and labels counts differ', async () => {
    const i = fixture('pair-images', idxImages(3, 2, 2));
    const l = fixture('pair-labels', idxLabels([0, 1]));
    await expectError(
      () => readIdxPair({ images: i, labels: l }, { images: ref(i), labels: ref(l, 'data.train.labels') }),
      [RECIPE, 'data.train.images / data.train.labels', `3 images in ${i}`, `2 labels in ${l}`, 'Pair files of the same split'],
    );
  });

  it('errors on a missing file', async () => {
    const p = join(dir, 'missing-idx');
    await expectError(() => readIdxImages(p, ref(p)), [p, 'not found', 'data.train.images', RECIPE]);
  });
});
