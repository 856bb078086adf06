import { createHash } from 'node:crypto';
import type { z } from 'zod';
import { join, resolve } from 'node:path';
import { loadCheckpoint } from '../train/checkpoint.js';
import { heldOutSplit } from '../train/evaluate.js';
import { initBackend } from '../train/backend.js';
import { compileCheckpoint } from '../he/compile.js';
import { type HeParams, describeParams } from '../he/params.js';
import { refreshPointName } from '../he/refresh.js';
import { roundTripCarried } from '../he/passes/segment-refresh.js';
import { nextPow2 } from '../he/packing/layout.js';
import { writeDirAtomic } from '../util/atomic-dir.js';
import { HepolyError } from '../util/errors.js';
import { encodeProgram } from './program-codec.js';
import { currentVersions } from './versions.js';
import {
  type ClientArtifact,
  type ServerManifest,
  ClientArtifactSchema,
  compactLayout,
  CLIENT_FORMAT,
  SERVER_FORMAT,
  digestInput,
} from './artifact-format.js';
import { isClientArtifactDir, isServerArtifactDir } from './artifact-load.js';
import { claimOutputDir } from '../util/output-guard.js';
import { chooseExportProgram } from './export-params.js';
import { encodeSamples } from '../he/program.js';
import { refuseVerticalCheckpoint } from '../federated/vertical/checkpoint-guard.js';
import { type ExportPacking, exportPacking, packingSpec } from './export-packing.js';

export { slotLayout } from './export-packing.js';

/**
 * `hepoly export CHECKPOINT --format he --out DIR`: the compiled program and its parameters,
 * split into what the evaluating party may see (DIR/server: program with plaintext weights,
 * parameters, rotation steps, versions) and what the data owner needs (DIR/client:
 * parameters, preprocessing, slot layouts of input and output, versions, the server digest;
 * no weights). Neither holds a key: keys are the client's, made on first use.
 */

export interface HeExportOptions {
  checkpoint: string;
  out: string;
  /** KIND[:M] of the packing registry: sample (default: latency), batch, stacked:M, interleaved:M */
  packing?: string;
  /** 'auto' or a JSON file */
  params?: string;
  /** 'client': a program deeper than one chain is cut into segments; the data owner re-encrypts between them (a session of round trips) */
  refresh?: string;
  /** replace an existing hepoly export at `out` (anything else there is always refused) */
  overwrite?: boolean;
  /** the folder the checkpoint's relative data paths are read from (a moved checkpoint or data); export packs with a few held-out rows */
  data?: string;
  log?: (line: string) => void;
}

export interface HeExportResult {
  serverDir: string;
  clientDir: string;
  digest: string;
  params: HeParams;
  rotationSteps: number[];
  serverBytes: number;
  clientBytes: number;
  /** client round trips per request (0: the whole depth fits one chain) */
  refreshRounds: number;
  packing: string;
  samplesPerPass: number;
}

export async function exportHeArtifacts(o: HeExportOptions): Promise<HeExportResult> {
  // export packs with a few held-out rows: refused before --out is claimed
  refuseVerticalCheckpoint(o.checkpoint, 'export', o.data);
  const claim = claimOutputDir(o.out, {
    flag: '--out',
    kind: 'export (server/ and client/)',
    describeOurs: (d) => (isServerArtifactDir(join(d, 'server')) || isClientArtifactDir(join(d, 'client')) ? 'a hepoly export (server/ and client/)' : null),
    replace: !!o.overwrite,
    replaceHint: 'pass --overwrite',
  });
  try {
    return await exportInto(claim.dir, o);
  } finally {
    claim.release();
  }
}

async function exportInto(out: string, o: HeExportOptions): Promise<HeExportResult> {
  const log = o.log ?? (() => {});
  const refresh = o.refresh ?? 'none';
  if (refresh !== 'none' && refresh !== 'client') throw new HepolyError(`--refresh ${refresh}: expected none or client`, { exitCode: 2 });
  const ckpt = loadCheckpoint(o.checkpoint);
  const compiled = compileCheckpoint(ckpt);
  await initBackend();
  const split = await heldOutSplit(ckpt, o.data);
  const shape = ckpt.graph.inputShape;
  const minSlots = shape.length === 3 ? nextPow2(shape[0] * shape[1]) : undefined;
  const spec = packingSpec(o.packing, compiled);
  // a served session holds no ciphertexts between rounds (it survives a restart): carried tensors go through the client too
  // the value ranges are calibrated on the program's own inputs (a language model's one-hot rows, not its token ids)
  const x = encodeSamples(compiled, split.x, split.count);
  const chosen = chooseExportProgram(o.params, refresh, { compiled, x, count: Math.min(split.count, 32), minSlots, source: ckpt.dir, packing: spec.split(':')[0] });
  const { params } = chosen;
  const program = roundTripCarried(chosen.program);
  const slots = params.polyModulusDegree / 2;
  if (minSlots && slots < minSlots) {
    throw new HepolyError(`--params ${o.params}: an image plane of ${ckpt.dir} needs ${minSlots} slots, N=${params.polyModulusDegree} has ${slots}. Use a larger poly_modulus_degree`);
  }
  const packing = exportPacking(spec, program, params, ckpt.dir);
  const steps = packing.rotationSteps;
  const perPass = packing.samplesPerPass > 1 ? `${packing.samplesPerPass} samples per pass, ` : '';
  log(`program: depth ${program.depth}, ${program.steps.length} steps; parameters: ${describeParams(params)}`);
  log(`packing: ${packing.kind}, ${perPass}${packing.input.ciphertexts} input and ${packing.output.ciphertexts} output ciphertexts per pass, ${steps.length} rotation steps`);
  const rounds = program.refreshes?.length ?? 0;
  for (const r of program.refreshes ?? []) log(`client refresh before ${refreshPointName(program, r)}: ${r.tensors.map((t) => program.tensors[t.src].label).join('; ')}`);
  if (chosen.why) log(`--refresh client: ${chosen.why}`);
  if (rounds) log(`--refresh client: ${rounds} round trip(s) per request: the data owner decrypts and re-encrypts these activations (it sees them; the server still holds no secret key)`);

  const versions = currentVersions();
  const encoded = encodeProgram(program);
  const sha = (b: string | Uint8Array) => createHash('sha256').update(b).digest('hex');
  const core: Omit<ServerManifest, 'digest'> = {
    format: SERVER_FORMAT,
    versions,
    checkpoint: resolve(ckpt.dir),
    params,
    packing: packingField(packing),
    rotation_steps: steps,
    input_shape: shape,
    classes: program.classes,
    input_ciphertexts: packing.input.ciphertexts,
    output_ciphertexts: packing.output.ciphertexts,
    depth: program.depth,
    ...(rounds ? { refresh_rounds: rounds } : {}),
    files: { 'program.json': sha(encoded.json), 'program.bin': sha(encoded.bin) },
  };
  const digest = sha(digestInput(core));
  const manifest: ServerManifest = { ...core, digest };
  // as client.json writes it: slot lists as runs where shorter (read back as lists by the schema)
  const client: z.input<typeof ClientArtifactSchema> = {
    format: CLIENT_FORMAT,
    versions,
    server_digest: digest,
    params,
    packing: packingField(packing),
    rotation_steps: steps,
    slots,
    ...(rounds ? { refresh_rounds: rounds } : {}),
    preprocess: {
      labels: ckpt.preprocess.labels,
      input_shape: ckpt.preprocess.inputShape,
      ...(ckpt.preprocess.features ? { features: ckpt.preprocess.features } : {}),
      normalize: ckpt.preprocess.normalize,
      source: ckpt.recipe.data.source === 'idx' ? 'idx' : 'csv',
      ...(program.inputEncoding ? { input_encoding: program.inputEncoding } : {}),
    },
    input: compactLayout(packing.input),
    output: compactLayout(packing.output),
  };
  const serverDir = join(out, 'server');
  const clientDir = join(out, 'client');
  const manifestJson = JSON.stringify(manifest, null, 1);
  const clientJson = JSON.stringify(client);
  // manifest.json last: its presence marks the folder complete
  writeDirAtomic(serverDir, [['program.json', encoded.json], ['program.bin', encoded.bin], ['manifest.json', manifestJson]], isServerArtifactDir);
  writeDirAtomic(clientDir, [['client.json', clientJson]], isClientArtifactDir);
  log(`wrote ${serverDir} (digest ${digest.slice(0, 12)}) and ${clientDir}`);
  return {
    serverDir,
    clientDir,
    digest,
    params,
    rotationSteps: steps,
    serverBytes: encoded.json.length + encoded.bin.length + manifestJson.length,
    clientBytes: clientJson.length,
    refreshRounds: rounds,
    packing: packing.kind,
    samplesPerPass: packing.samplesPerPass,
  };
}

/** The packing as both artifacts name it: its kind, and its samples per pass when more than one. */
function packingField(p: ExportPacking): ClientArtifact['packing'] {
  return p.samplesPerPass > 1 ? { kind: p.kind, samples_per_pass: p.samplesPerPass } : { kind: p.kind };
}
