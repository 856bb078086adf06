import { basename, dirname, join } from 'node:path';
import type { ValidationReport } from '../he/validate.js';
import { writeFileAtomic } from '../util/atomic-file.js';
import type { Figure } from './figures.js';
import { specToSvg, svgToPng } from './render.js';

/**
 * Figures of `he-validate --report FILE.md`: where the time went (keygen, server setup,
 * encrypt, evaluate, decrypt) and, with --trace, each layer's CKKS error against its values.
 * Written beside the markdown as FILE-<id>.svg and .png; the markdown links the SVGs.
 */

export function heValidateFigures(r: ValidationReport): Figure[] {
  const figures = [latencyFigure(r)];
  if (r.layerErrors?.length) figures.push(layerErrorFigure(r));
  return figures;
}

function latencyFigure(r: ValidationReport): Figure {
  const t = r.timings;
  const values = [
    { part: 'keygen', ms: t.keygenMs },
    { part: 'server setup', ms: t.serverSetupMs },
    { part: 'encrypt', ms: t.encryptMs },
    { part: 'evaluate', ms: t.evaluateMs },
    { part: 'decrypt', ms: t.decryptMs },
  ];
  const title = `Time split, ${r.samples} samples (${r.packing} packing, ${r.workers} workers)`;
  return {
    id: 'time-split',
    title,
    spec: {
      title,
      width: 420,
      height: 150,
      data: { values },
      mark: 'bar',
      encoding: { y: { field: 'part', type: 'nominal', sort: null, title: null }, x: { field: 'ms', type: 'quantitative', title: 'milliseconds' } },
    },
  };
}

/** max |error| and max |value| per traced tensor, on a log axis (errors sit ~1e-3..1e-6 of the values) */
function layerErrorFigure(r: ValidationReport): Figure {
  const values = r.layerErrors!.flatMap((e, i) => [
    { tensor: `${i + 1}. ${e.label}`, what: 'max abs error', value: Math.max(e.maxAbsError, 1e-12) },
    { tensor: `${i + 1}. ${e.label}`, what: 'max abs value', value: Math.max(e.maxAbsValue, 1e-12) },
  ]);
  const title = 'Per-layer CKKS error (--trace)';
  return {
    id: 'layer-error',
    title,
    spec: {
      title,
      width: 420,
      height: Math.max(120, 18 * r.layerErrors!.length),
      data: { values },
      mark: { type: 'point', filled: true, size: 60 },
      encoding: {
        y: { field: 'tensor', type: 'nominal', sort: null, title: null, axis: { labelLimit: 360 } },
        x: { field: 'value', type: 'quantitative', scale: { type: 'log' }, title: 'absolute value (log)' },
        color: { field: 'what', type: 'nominal', title: null },
      },
    },
  };
}

/** Writes the figures beside `markdownPath`; returns figure id -> SVG file name (relative to the markdown). */
export async function writeHeValidateFigures(markdownPath: string, r: ValidationReport): Promise<Record<string, string>> {
  const stem = basename(markdownPath).replace(/\.md$/, '');
  const links: Record<string, string> = {};
  for (const f of heValidateFigures(r)) {
    const svg = await specToSvg(f.spec);
    const name = `${stem}-${f.id}`;
    writeFileAtomic(join(dirname(markdownPath), `${name}.svg`), svg);
    writeFileAtomic(join(dirname(markdownPath), `${name}.png`), svgToPng(svg));
    links[f.id] = `${name}.svg`;
  }
  return links;
}
