import { type ValidationReport, fmtBytes, fmtMs } from './validate.js';

/**
 * The he-validate report as markdown (what `--report FILE.md` writes). `figures` maps a figure
 * id (time-split, layer-error: src/report/he-figures.ts) to the image file the markdown links.
 */
export function reportMarkdown(r: ValidationReport, figures: Record<string, string> = {}): string {
  const pct = (v: number) => `${(100 * v).toFixed(2)}%`;
  const sci = (v: number) => (v === 0 ? '0' : v.toExponential(2));
  const p = r.params;
  const lines: string[] = [];
  lines.push(`# Encrypted validation: ${r.checkpoint}`, '');
  lines.push(
    `${r.samples} samples of the ${r.split} split, ${r.packing} packing (${r.packingReason}), ` +
      `${r.mode === 'simulate' ? '**simulated** (float64, no encryption)' : 'CKKS on node-seal (SEAL 4.1)'}, ${r.workers} server worker threads.`,
    '',
  );
  lines.push('## Agreement', '', '| metric | value |', '|---|---|');
  lines.push(`| plaintext accuracy | ${pct(r.plaintextAccuracy)} |`);
  lines.push(`| encrypted accuracy | ${pct(r.encryptedAccuracy)} |`);
  lines.push(`| argmax agreement | ${pct(r.agreement)} (${r.disagreements} disagreements) |`);
  if (r.disagreements) lines.push(`| disagreeing samples (plaintext top-2 gap) | ${disagreementList(r)} |`);
  lines.push(`| max abs logit error | ${sci(r.maxAbsError)} (${sci(r.relativeError)} of the logit range ${r.logitRange.toFixed(3)}) |`);
  lines.push(`| mean abs logit error | ${sci(r.meanAbsError)} |`);
  const o = r.outOfRange;
  lines.push(
    `| outside trained ranges | ${o.checked ? `${o.inputSamples} samples (${o.inputValues} values) at the input, ${o.activationSamples} samples at an activation input` : 'not checked (no ranges.json)'} |`,
    '',
  );
  lines.push('## Parameters', '', '| | |', '|---|---|');
  lines.push(`| source | ${r.paramsSource} |`);
  lines.push(`| poly modulus degree N | ${p.polyModulusDegree} (${p.slots} slots) |`);
  lines.push(`| coeff modulus | [${p.coeffModulusBits.join(', ')}] = ${p.totalBits} bits (max ${p.maxBitsFor128} for 128-bit) |`);
  lines.push(`| scale | 2^${p.scaleBits}, q0 headroom ${p.headroomBits} bits |`);
  lines.push(`| levels | ${p.levels} available, ${r.depth} used |`);
  lines.push(`| security | ${p.securityBits}-bit (SEAL tc128) |`, '');
  if (r.refreshes) lines.push(...refreshMarkdown(r));
  lines.push('## Level budget per layer', '', '| layer | op | levels | how |', '|---|---|---|---|');
  for (const l of r.layers) lines.push(`| ${l.node} | ${l.op} | ${l.levels} | ${l.how} |`);
  lines.push('');
  if (r.layerErrors) {
    lines.push('## Per-layer error (--trace)', '');
    if (figures['layer-error']) lines.push(`![per-layer CKKS error](${figures['layer-error']})`, '');
    lines.push('| tensor | level | scale | max abs error | max abs value |', '|---|---|---|---|---|');
    for (const e of r.layerErrors) lines.push(`| ${e.label} | ${e.level} | 2^${e.scaleBits.toFixed(2)} | ${sci(e.maxAbsError)} | ${e.maxAbsValue.toPrecision(4)} |`);
    lines.push('');
  }
  lines.push('## Cost', '');
  if (figures['time-split']) lines.push(`![time split](${figures['time-split']})`, '');
  lines.push('| | |', '|---|---|');
  lines.push(`| latency per sample | ${fmtMs(r.latencyMsPerSample)}${r.samplesPerPass > 1 ? ` (a pass serves ${r.samplesPerPass} samples)` : ''} |`);
  lines.push(`| amortized per sample | ${fmtMs(r.amortizedMsPerSample)} |`);
  const t = r.timings;
  lines.push(`| keygen / encrypt / evaluate / decrypt | ${fmtMs(t.keygenMs)} / ${fmtMs(t.encryptMs)} / ${fmtMs(t.evaluateMs)} / ${fmtMs(t.decryptMs)} |`);
  lines.push(`| server setup (keys, program, diagonals) | ${fmtMs(t.serverSetupMs)} |`);
  lines.push(`| bytes client -> server | ${fmtBytes(r.bytes.clientToServer)} (keys ${fmtBytes(r.bytes.keys)}) |`);
  lines.push(`| bytes server -> client | ${fmtBytes(r.bytes.serverToClient)} |`);
  lines.push(`| ciphertexts | ${r.ciphertexts.input} in, ${r.ciphertexts.output} out (${r.ciphertexts.perPass} per pass) |`);
  lines.push(`| rotations | ${r.ops.rotations} (${r.rotationKeys} Galois keys) |`);
  lines.push(`| ciphertext-ciphertext mults | ${r.ops.ctCtMults} |`);
  lines.push(`| plaintext mults | ${r.ops.ptMults} |`);
  lines.push(`| rescales | ${r.ops.rescales} |`);
  lines.push(`| peak memory (process RSS, all workers) | ${r.peakRssMb.toFixed(0)} MiB |`);
  lines.push(`| SEAL wasm heaps (sum over workers) | ${r.workerHeapMb.toFixed(0)} MiB |`);
  lines.push('');
  return lines.join('\n');
}

/** Human summary lines for the terminal. */
export function reportText(r: ValidationReport): string[] {
  const pct = (v: number) => `${(100 * v).toFixed(2)}%`;
  const lines = [
    `accuracy: plaintext ${pct(r.plaintextAccuracy)}, encrypted ${pct(r.encryptedAccuracy)}; argmax agreement ${pct(r.agreement)} (${r.disagreements} of ${r.samples} differ)`,
    ...(r.disagreements ? [disagreementLine(r)] : []),
    `logit error: max ${r.maxAbsError.toExponential(2)} (${r.relativeError.toExponential(2)} of the range ${r.logitRange.toFixed(3)}), mean ${r.meanAbsError.toExponential(2)}`,
    `latency ${fmtMs(r.latencyMsPerSample)} per sample${r.samplesPerPass > 1 ? ` (a pass serves ${r.samplesPerPass})` : ''}, amortized ${fmtMs(r.amortizedMsPerSample)} per sample (${r.packing} packing, ${r.workers} workers${(r.workersPerSample ?? 1) > 1 ? `, ${r.workersPerSample} on each sample` : ''})`,
    `time: keygen ${fmtMs(r.timings.keygenMs)}, encrypt ${fmtMs(r.timings.encryptMs)}, evaluate ${fmtMs(r.timings.evaluateMs)}, decrypt ${fmtMs(r.timings.decryptMs)}`,
    `bytes: client->server ${fmtBytes(r.bytes.clientToServer)}, server->client ${fmtBytes(r.bytes.serverToClient)}; ciphertexts ${r.ciphertexts.input} in, ${r.ciphertexts.output} out`,
    `ops: ${r.ops.rotations} rotations, ${r.ops.ctCtMults} ct-ct mults, ${r.ops.ptMults} plaintext mults, ${r.ops.rescales} rescales; levels ${r.depth} of ${r.params.levels}`,
    `peak memory ${r.peakRssMb.toFixed(0)} MiB RSS (SEAL wasm heaps ${r.workerHeapMb.toFixed(0)} MiB over ${r.workers} workers)`,
  ];
  if (r.refreshes) {
    const f = r.refreshes;
    lines.push(
      f.perPass
        ? `interactive steps (--refresh client): ${f.perPass} client refresh${f.perPass === 1 ? '' : 'es'} per sample, ${f.total} in all (depth ${r.depth} on ${r.params.levels} levels)`
        : `interactive steps (--refresh client): none needed (depth ${r.depth} fits ${r.params.levels} levels)`,
    );
    for (const p of f.points) lines.push(`  refresh before ${p.before}: ${p.ciphertexts} ciphertexts, ${fmtBytes(p.bytesToClient)} to the client, ${fmtBytes(p.bytesToServer)} back (${p.tensors.join('; ')})`);
  }
  const o = r.outOfRange;
  if (o.checked && (o.inputSamples || o.activationSamples)) {
    lines.push(
      `outside trained ranges (counted, not clipped): ${o.inputSamples} samples at the input, ${o.activationSamples} at activation inputs (${Object.entries(o.perActivation)
        .filter(([, v]) => v)
        .map(([k, v]) => `${k}: ${v}`)
        .join(', ')})`,
    );
  }
  if (r.layerErrors) {
    lines.push('per-layer (--trace: decrypted by the client, debug only):');
    for (const e of r.layerErrors) {
      lines.push(`  level ${e.level}, scale 2^${e.scaleBits.toFixed(2)}  max err ${e.maxAbsError.toExponential(2)}  max |v| ${e.maxAbsValue.toPrecision(3)}  ${e.label}`);
    }
  }
  return lines;
}

/** The interactive steps of a --refresh client run: each round trip to the client, named. */
function refreshMarkdown(r: ValidationReport): string[] {
  const f = r.refreshes!;
  const lines = ['## Interactive steps (--refresh client)', ''];
  lines.push(
    `The network needs depth ${r.depth}; the chain has ${r.params.levels} levels and SEAL has no bootstrapping, so the server sent ` +
      `ciphertexts back to the client ${f.perPass} time${f.perPass === 1 ? '' : 's'} per sample (${f.total} in all), which decrypted and re-encrypted them at the top level. ` +
      'In this validation run the client is the model owner; in a deployment each refresh shows the data owner an intermediate activation.',
    '',
  );
  if (f.points.length) {
    lines.push('| # | before layer | tensors | ciphertexts / sample | to client / sample | to server / sample |', '|---|---|---|---|---|---|');
    f.points.forEach((p, i) => lines.push(`| ${i + 1} | ${p.before} | ${p.tensors.join('; ')} | ${p.ciphertexts} | ${fmtBytes(p.bytesToClient)} | ${fmtBytes(p.bytesToServer)} |`));
    lines.push('');
  }
  return lines;
}

function disagreementList(r: ValidationReport): string {
  const shown = r.disagreementSamples.map((d) => `#${d.index} (${d.plaintextGap.toExponential(1)})`).join(', ');
  return r.disagreements > r.disagreementSamples.length ? `${shown}, ...` : shown;
}

/** Which samples differ and whether CKKS noise can explain it (a plaintext near-tie). */
function disagreementLine(r: ValidationReport): string {
  const why =
    r.nearTies === r.disagreements
      ? `all ${r.nearTies} are plaintext near-ties (their error is no larger than the agreeing samples' ${r.agreeingMaxError.toExponential(1)}): CKKS noise decides them; raise precision with --scale-bits 40`
      : `${r.nearTies} of ${r.disagreements} are plaintext near-ties; the others have errors beyond the agreeing samples' ${r.agreeingMaxError.toExponential(1)}: rerun with --trace to find the layer`;
  return `  differing ${r.split} samples (plaintext top-2 gap): ${disagreementList(r)}; ${why}`;
}
