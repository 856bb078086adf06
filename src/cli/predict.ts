import { HepolyError } from '../util/errors.js';
import { argmax, preprocessSample } from '../deploy/client/preprocess.js';
import { defineCommand } from './command.js';

/** Options of `hepoly predict`, as the CLI parses them. */
export interface PredictArgs {
  dir: string;
  server: string;
  input: string;
  keys?: string;
  verify?: string;
  token?: string;
  json?: boolean;
}

/**
 * `hepoly predict DIR/client --server URL --input FILE`: the data owner's side. Keys are made
 * once into --keys (default DIR-keys, beside the client artifact) and the evaluation keys
 * uploaded only when the server does not know their id; each sample is encrypted, evaluated
 * by the server and decrypted here. --verify runs the plaintext checkpoint on the same inputs.
 */
export async function runPredict(a: PredictArgs): Promise<void> {
  if (!/^https?:\/\//.test(a.server)) throw new HepolyError(`--server ${a.server}: expected an http:// or https:// URL, e.g. http://127.0.0.1:8080`, { exitCode: 2 });
  const [{ loadClientArtifact }, { openClientKeys }, { readInputFile }, { RemoteModel }, { currentVersions }] = await Promise.all([
    import('../deploy/artifact-load.js'),
    import('../deploy/key-folder.js'),
    import('../deploy/input-file.js'),
    import('../deploy/client/remote-model.js'),
    import('../deploy/versions.js'),
  ]);
  const artifact = loadClientArtifact(a.dir);
  const here = currentVersions();
  if (artifact.versions.node_seal !== here.node_seal || artifact.versions.seal !== here.seal) {
    throw new HepolyError(
      `${a.dir}: exported with node-seal ${artifact.versions.node_seal} (SEAL ${artifact.versions.seal}), this hepoly has node-seal ${here.node_seal} (SEAL ${here.seal}); ciphertexts may not be compatible. Use the hepoly version that exported it, or export again`,
    );
  }
  const raw = readInputFile(a.input, artifact);
  // a server that restarts mid-run is waited for (RemoteModel's retries); say so, on stderr so --json's last line stays the object
  const onRetry = (r: { method: string; path: string; attempt: number; failed: string }) => console.error(`${a.server}: ${r.method} ${r.path} failed (${r.failed}); sending it again (try ${r.attempt + 1})`);
  const remote = new RemoteModel(artifact, { url: a.server, token: a.token, onRetry });
  await remote.describe();
  const keysDir = a.keys ?? `${a.dir.replace(/\/+$/, '')}-keys`;
  const { client } = await openClientKeys(keysDir, artifact);
  try {
    const { keyId, uploaded } = await remote.ensureKeys(client);
    const labels = artifact.preprocess.labels;
    const predictions: string[] = [];
    const inputs = raw.map((r, i) => preprocessSample(artifact, r, `${a.input}: sample ${i}`));
    let ms = 0;
    // one request per pass: a sample, or up to samples_per_pass for batch, stacked and interleaved exports
    const m = client.samplesPerPass;
    for (let first = 0; first < inputs.length; first += m) {
      const pass = inputs.slice(first, first + m);
      const t0 = performance.now();
      const { outputs } = await remote.evaluate(keyId, [client.encryptPass(pass)], client, pass.length);
      const logits = client.decryptPass(outputs[0], pass.length);
      ms += performance.now() - t0;
      logits.forEach((l, k) => {
        const i = first + k;
        const c = argmax(l);
        predictions.push(labels[c] ?? String(c));
        if (!a.json || inputs.length <= 20) console.log(`sample ${i}: ${predictions[i]}  (logits ${Array.from(l, (v) => v.toFixed(3)).join(', ')})`);
      });
    }
    let agreement: number | undefined;
    if (a.verify) {
      const plain = await plaintextPredictions(a.verify, inputs, artifact.preprocess.labels.length);
      const agree = plain.filter((c, i) => (labels[c] ?? String(c)) === predictions[i]).length;
      agreement = agree / inputs.length;
      console.log(`--verify ${a.verify}: the plaintext model agrees on ${agree} of ${inputs.length} samples`);
    }
    console.log(`${inputs.length} samples, ${(ms / inputs.length).toFixed(0)} ms per sample; sent ${remote.bytesSent} bytes, received ${remote.bytesReceived}; key id ${keyId.slice(0, 12)}... (${uploaded ? 'uploaded' : 'already on the server'})`);
    if (a.json) {
      console.log(
        JSON.stringify({
          predictions,
          samples: inputs.length,
          ...(agreement !== undefined ? { agreement } : {}),
          latency_ms_per_sample: ms / inputs.length,
          bytes_sent: remote.bytesSent,
          bytes_received: remote.bytesReceived,
          key_id: keyId,
          // ensureKeys' upload, or evaluate()'s to a server restarted on another --keys folder
          keys_uploaded: remote.keyUploads > 0,
          refresh_rounds: remote.refreshRounds,
          retries: remote.retries,
        }),
      );
    }
  } finally {
    client.delete();
  }
}

/** The checkpoint's own tfjs forward pass on the same normalized inputs. */
async function plaintextPredictions(checkpoint: string, inputs: Float64Array[], classes: number): Promise<number[]> {
  const { loadCheckpoint } = await import('../train/checkpoint.js');
  const { initBackend } = await import('../train/backend.js');
  const { predict } = await import('../models/tf-interpreter.js');
  const ckpt = loadCheckpoint(checkpoint);
  if (ckpt.graph.classes !== classes) throw new HepolyError(`--verify ${checkpoint}: ${ckpt.graph.classes} classes, the client artifact has ${classes}: not the exported checkpoint`);
  await initBackend();
  const per = inputs[0].length;
  const x = new Float32Array(inputs.length * per);
  inputs.forEach((v, i) => x.set(v, i * per));
  const logits = predict(ckpt.graph, ckpt.weights, x, inputs.length);
  return inputs.map((_, i) => argmax(logits.subarray(i * classes, (i + 1) * classes)));
}

export const predictCommand = defineCommand(
  'predict <dir>',
  'encrypt inputs with an exported DIR/client, have a hepoly serve server evaluate them, decrypt the predictions',
  (y) =>
    y
      .positional('dir', { type: 'string', demandOption: true, describe: 'the client artifact (DIR/client of hepoly export)' })
      .option('server', { type: 'string', demandOption: true, describe: 'URL of hepoly serve, e.g. http://127.0.0.1:8080' })
      .option('input', { type: 'string', demandOption: true, describe: 'samples: .csv (header row), .json (arrays) or .idx images' })
      .option('keys', { type: 'string', describe: 'local keys folder, secret key included, mode 0600 (default DIR-keys)' })
      .option('verify', { type: 'string', describe: 'a checkpoint: also run the plaintext model and report the agreement' })
      .option('token', { type: 'string', describe: "the server's bearer token" })
      .option('json', { type: 'boolean', default: false }),
  (a) => runPredict({ dir: a.dir, server: a.server, input: a.input, keys: a.keys, verify: a.verify, token: a.token, json: a.json }),
);
