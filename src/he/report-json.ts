/**
 * The keys every `he-validate --json` object carries, whichever evaluator produced it (the
 * CNN/MLP path in validate.ts, the transformer path in transformer/report.ts): one list, so
 * the two cannot drift apart on the contract users script against.
 */
export interface ReportCore {
  checkpoint: string;
  split: string;
  samples: number;
  mode: string;
  packing: string;
  plaintextAccuracy: number;
  encryptedAccuracy: number;
  agreement: number;
  maxAbsError: number;
  latencyMsPerSample: number;
  amortizedMsPerSample: number;
  ciphertexts: { input: number; output: number };
  params: { polyModulusDegree: number; coeffModulusBits: number[]; scaleBits: number; securityBits: number; levels: number };
  depth: number;
  timings: { keygenMs: number; encryptMs: number; evaluateMs: number; decryptMs: number };
  bytes: { clientToServer: number; serverToClient: number };
  /** epochs trained and planned (a checkpoint killed mid-training says so) */
  training?: { trained_epochs: number; planned_epochs: number; complete: boolean };
}

export function coreReportJson(r: ReportCore): Record<string, unknown> {
  return {
    checkpoint: r.checkpoint,
    ...(r.training ? { trained_epochs: r.training.trained_epochs, planned_epochs: r.training.planned_epochs, training_complete: r.training.complete } : {}),
    split: r.split,
    samples: r.samples,
    mode: r.mode,
    packing: r.packing,
    plaintext_accuracy: r.plaintextAccuracy,
    encrypted_accuracy: r.encryptedAccuracy,
    agreement: r.agreement,
    max_abs_error: r.maxAbsError,
    latency_ms_per_sample: r.latencyMsPerSample,
    amortized_ms_per_sample: r.amortizedMsPerSample,
    ciphertexts: r.ciphertexts.input + r.ciphertexts.output,
    ciphertexts_in: r.ciphertexts.input,
    ciphertexts_out: r.ciphertexts.output,
    poly_modulus_degree: r.params.polyModulusDegree,
    coeff_modulus_bits: r.params.coeffModulusBits,
    scale_bits: r.params.scaleBits,
    security_bits: r.params.securityBits,
    levels: r.params.levels,
    depth: r.depth,
    keygen_ms: r.timings.keygenMs,
    encrypt_ms: r.timings.encryptMs,
    evaluate_ms: r.timings.evaluateMs,
    decrypt_ms: r.timings.decryptMs,
    bytes_client_to_server: r.bytes.clientToServer,
    bytes_server_to_client: r.bytes.serverToClient,
  };
}
