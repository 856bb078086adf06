import { HepolyError } from '../util/errors.js';
import { runExportOnnx } from './export-onnx.js';
import { defineCommand } from './command.js';

/** Options of `hepoly export`, as the CLI parses them. */
export interface ExportArgs {
  checkpoint: string;
  format?: string;
  out?: string;
  packing?: string;
  params?: string;
  refresh?: string;
  overwrite?: boolean;
  data?: string;
  json?: boolean;
}

/**
 * `hepoly export CHECKPOINT [--format he|onnx] --out DIR`: one command, one exporter per
 * format. `he` writes the encrypted-inference artifacts (src/deploy/export.ts).
 */
export async function runExport(a: ExportArgs): Promise<void> {
  const format = a.format ?? 'he';
  if (format === 'he') return exportHe(a);
  // other formats plug in here, one line each (onnx: src/onnx/export.ts)
  if (format === 'onnx') return runExportOnnx(a);
  throw new HepolyError(`--format ${format}: unknown export format. Use --format he (encrypted-inference artifacts) or --format onnx (the plaintext network as an ONNX model)`, { exitCode: 2 });
}

async function exportHe(a: ExportArgs): Promise<void> {
  if (!a.out) throw new HepolyError('--out DIR: required: the folder that gets server/ and client/', { exitCode: 2 });
  const { exportHeArtifacts } = await import('../deploy/export.js');
  const r = await exportHeArtifacts({ checkpoint: a.checkpoint, out: a.out, packing: a.packing, params: a.params, refresh: a.refresh, overwrite: a.overwrite, data: a.data, log: (l) => console.log(l) });
  console.log(`server artifact: ${r.serverDir} (${(r.serverBytes / 1024).toFixed(1)} KiB, give it to the server; nothing in it is secret)`);
  console.log(`client artifact: ${r.clientDir} (${(r.clientBytes / 1024).toFixed(1)} KiB, give it to the data owner; no weights)`);
  if (a.json) {
    console.log(
      JSON.stringify({
        server: r.serverDir,
        client: r.clientDir,
        digest: r.digest,
        poly_modulus_degree: r.params.polyModulusDegree,
        coeff_modulus_bits: r.params.coeffModulusBits,
        rotation_steps: r.rotationSteps.length,
        server_bytes: r.serverBytes,
        client_bytes: r.clientBytes,
        refresh_rounds: r.refreshRounds,
        packing: r.packing,
        samples_per_pass: r.samplesPerPass,
      }),
    );
  }
}

export const exportCommand = defineCommand(
  'export <checkpoint>',
  'write deployable artifacts: --format he gives DIR/server (program, params; nothing secret) and DIR/client (params, preprocessing, layouts; no weights)',
  (y) =>
    y
      .positional('checkpoint', { type: 'string', demandOption: true })
      .option('format', { type: 'string', default: 'he', describe: 'he: encrypted-inference artifacts for hepoly serve / hepoly predict; onnx: the plaintext network as MODEL.onnx (--out MODEL.onnx)' })
      .option('out', { type: 'string', describe: 'output folder (gets server/ and client/)' })
      .option('packing', { type: 'string', describe: 'sample (default: one sample per request, latency; token for attention models), batch (a sample per slot, no rotations: throughput), token (transformers: a ciphertext per feature, tokens in blocks of slots), stacked[:M] or interleaved[:M] (M samples per pass)' })
      .option('params', { type: 'string', default: 'auto', describe: 'auto, or a JSON file {poly_modulus_degree, coeff_modulus_bits, scale_bits}' })
      .option('refresh', { type: 'string', choices: ['none', 'client'], describe: 'client: a model deeper than one CKKS chain is cut into segments; per request the data owner re-encrypts between them (round trips, counted)' })
      .option('overwrite', { type: 'boolean', default: false, describe: 'replace an existing hepoly export at --out' })
      .option('data', { type: 'string', describe: "folder the checkpoint's relative data paths are read from (a moved checkpoint or data set)" })
      .option('json', { type: 'boolean', default: false }),
  (a) => runExport({ checkpoint: a.checkpoint, format: a.format, out: a.out, packing: a.packing, params: a.params, refresh: a.refresh, overwrite: a.overwrite, data: a.data, json: a.json }),
);
