import { readFile } from 'node:fs/promises';
import { gunzipSync } from 'node:zlib';
import { HepolyError, describeProblem } from '../util/errors.js';
import { recipeField, sourceLabel, type SourceRef } from './csv.js';

/**
 * IDX files (the MNIST / Fashion-MNIST format): a big-endian header — magic 0x0000TTDD with
 * type TT (0x08: unsigned bytes, the only type accepted here) and DD dimensions, then one
 * uint32 per dimension — followed by the data. Files may be gzip-compressed (detected by the
 * gzip magic bytes 1f 8b).
 */

export const IDX_IMAGES_MAGIC = 0x00000803;
export const IDX_LABELS_MAGIC = 0x00000801;

export interface IdxImages {
  count: number;
  rows: number;
  cols: number;
  /** count * rows * cols unsigned bytes, row-major */
  data: Uint8Array;
}

export interface IdxLabels {
  count: number;
  data: Uint8Array;
}

function fail(message: string, cause?: unknown): never {
  throw new HepolyError(message, cause === undefined ? {} : { cause });
}

const hex = (n: number) => '0x' + (n >>> 0).toString(16).padStart(8, '0');

/** True when the bytes start with the gzip magic 1f 8b. */
export function isGzip(buf: Uint8Array): boolean {
  return buf.length >= 2 && buf[0] === 0x1f && buf[1] === 0x8b;
}

/** Returns the raw IDX bytes, gunzipping when the buffer is gzip. */
export function decompressIdx(buf: Uint8Array, ref: SourceRef): Uint8Array {
  if (!isGzip(buf)) return buf;
  try {
    return gunzipSync(buf);
  } catch (e) {
    fail(
      describeProblem({
        file: sourceLabel(ref),
        what: `cannot decompress this gzip file (${(e as Error).message})`,
        fix: 'The file is truncated or corrupt: download it again',
      }),
      e,
    );
  }
}

/** Parses a (decompressed) IDX buffer of the given kind. */
function parseIdx(raw: Uint8Array, kind: 'images' | 'labels', ref: SourceRef): { dims: number[]; data: Uint8Array } {
  const src = sourceLabel(ref);
  const wantMagic = kind === 'images' ? IDX_IMAGES_MAGIC : IDX_LABELS_MAGIC;
  const wantDims = kind === 'images' ? 3 : 1;
  const what = `an IDX ${kind} file (magic ${hex(wantMagic)})`;
  if (raw.length < 4) {
    fail(
      describeProblem({
        file: src,
        expected: what,
        found: `a file of ${raw.length} bytes`,
        fix: 'The file is truncated: download it again',
      }),
    );
  }
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const magic = view.getUint32(0, false);
  if (magic !== wantMagic) {
    let found = `magic ${hex(magic)}`;
    let fix = `Point ${recipeField(ref, ref.field)} at an IDX ${kind} file (e.g. ${
      kind === 'images' ? 'train-images-idx3-ubyte.gz' : 'train-labels-idx1-ubyte.gz'
    })`;
    const other = kind === 'images' ? IDX_LABELS_MAGIC : IDX_IMAGES_MAGIC;
    if (magic === other) {
      found += ` (an IDX ${kind === 'images' ? 'labels' : 'images'} file)`;
      fix = 'The images and labels files look swapped: exchange them in the recipe';
    } else if ((magic & 0xffff0000) !== 0) {
      found += ', which is not an IDX file';
    } else {
      found += ` (IDX data type 0x${((magic >> 8) & 0xff).toString(16)} with ${magic & 0xff} dimensions; only unsigned bytes (0x08) are supported)`;
    }
    fail(describeProblem({ file: src, expected: what, found, fix }));
  }
  const headerBytes = 4 + 4 * wantDims;
  if (raw.length < headerBytes) {
    fail(
      describeProblem({
        file: src,
        expected: `at least the ${headerBytes}-byte IDX header`,
        found: `${raw.length} bytes`,
        fix: 'The file is truncated: download it again',
      }),
    );
  }
  const dims: number[] = [];
  for (let d = 0; d < wantDims; d++) dims.push(view.getUint32(4 + 4 * d, false));
  const n = dims.reduce((a, b) => a * b, 1);
  const expectedBytes = headerBytes + n;
  if (raw.length !== expectedBytes) {
    const shape = dims.join(' x ');
    fail(
      describeProblem({
        file: src,
        expected: `${expectedBytes} bytes (${headerBytes}-byte header + ${shape} bytes of data, as the header says)`,
        found: `${raw.length} bytes`,
        fix:
          raw.length < expectedBytes
            ? 'The file is truncated: download it again'
            : 'The file has trailing bytes after the data: it is corrupt or not an IDX file; download it again',
      }),
    );
  }
  return { dims, data: raw.subarray(headerBytes) };
}

export function parseIdxImages(buf: Uint8Array, ref: SourceRef): IdxImages {
  const { dims, data } = parseIdx(decompressIdx(buf, ref), 'images', ref);
  return { count: dims[0], rows: dims[1], cols: dims[2], data };
}

export function parseIdxLabels(buf: Uint8Array, ref: SourceRef): IdxLabels {
  const { dims, data } = parseIdx(decompressIdx(buf, ref), 'labels', ref);
  return { count: dims[0], data };
}

async function readBytes(path: string, ref: SourceRef): Promise<Uint8Array> {
  try {
    return await readFile(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    fail(
      describeProblem({
        file: sourceLabel(ref),
        what: code === 'ENOENT' ? 'data file not found' : `cannot read the data file (${code ?? String(e)})`,
        fix: `Check ${recipeField(ref, ref.field)}`,
      }),
      e,
    );
  }
}

/** Reads an IDX images file (gzip or raw); `path` is the resolved path to read. */
export async function readIdxImages(path: string, ref: SourceRef): Promise<IdxImages> {
  return parseIdxImages(await readBytes(path, ref), ref);
}

/** Reads an IDX labels file (gzip or raw); `path` is the resolved path to read. */
export async function readIdxLabels(path: string, ref: SourceRef): Promise<IdxLabels> {
  return parseIdxLabels(await readBytes(path, ref), ref);
}

/** Reads an images/labels pair and checks that the counts agree. */
export async function readIdxPair(
  paths: { images: string; labels: string },
  refs: { images: SourceRef; labels: SourceRef },
): Promise<{ images: IdxImages; labels: IdxLabels }> {
  const [images, labels] = await Promise.all([readIdxImages(paths.images, refs.images), readIdxLabels(paths.labels, refs.labels)]);
  if (images.count !== labels.count) {
    fail(
      describeProblem({
        file: refs.images.recipeFile,
        field: `${refs.images.field} / ${refs.labels.field}`,
        expected: 'as many labels as images',
        found: `${images.count} images in ${refs.images.file} but ${labels.count} labels in ${refs.labels.file}`,
        fix: 'Pair files of the same split (train-images with train-labels, t10k-images with t10k-labels)',
      }),
    );
  }
  return { images, labels };
}
