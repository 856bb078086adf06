import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { HepolyError } from '../util/errors.js';
import { runTrain } from './train.js';
import { runEval } from './eval.js';
import { runSummary } from './summary.js';
import { runHeValidate } from './he-validate.js';
import { runSample } from './sample.js';
import { runPrune } from './prune.js';
import { runHePlan } from './he-plan.js';
import { runFederate } from './federate.js';
import { runMakeData } from './make-data.js';
import { runExport } from './export.js';
import { runServe } from './serve.js';
import { runPredict } from './predict.js';
import { runSchema } from './schema.js';
import { runImport } from './import.js';
import { runReport } from './report.js';
import { runOps } from './ops.js';
import { runWorker } from './worker.js';

const NO_COMMAND = 'no command given';

/** The command line: parses arguments and calls the library; no logic of its own. */
export async function main(argv: string[]): Promise<number> {
  try {
    const parser = yargs(argv);
    await parser
      .scriptName('hepoly')
      .usage('$0 <command> [options]\n\nTrain polynomial neural networks that run under homomorphic encryption, and prove it.')
      .command(
        'train <recipe>',
        'train a recipe into a checkpoint',
        (y) =>
          y
            .positional('recipe', { type: 'string', demandOption: true, describe: 'recipe YAML file (or the name of a shipped recipe)' })
            .option('set', { type: 'string', array: true, describe: 'override a recipe key, e.g. --set train.epochs=3 (repeatable)' })
            .option('out', { type: 'string', describe: 'checkpoint directory (default checkpoints/<name>)' })
            .option('resume', { type: 'boolean', default: false, describe: 'continue from the last completed epoch' })
            .option('overwrite', { type: 'boolean', default: false, describe: 'replace an existing checkpoint at the output folder (anything else there is never replaced)' })
            .option('backend', { type: 'string', describe: 'force a tfjs backend: tensorflow-gpu, tensorflow, wasm or cpu' })
            .option('json', { type: 'boolean', default: false, describe: 'print a JSON object as the last line' }),
        (a) => runTrain({ recipe: a.recipe, set: a.set, out: a.out, resume: a.resume, overwrite: a.overwrite, json: a.json, backend: a.backend }),
      )
      .command(
        'eval <checkpoint>',
        'accuracy and loss on the held-out split (test set, else validation)',
        (y) =>
          y
            .positional('checkpoint', { type: 'string', demandOption: true })
            .option('data', { type: 'string', describe: "folder the checkpoint's relative data paths are read from (a moved checkpoint or data set)" })
            .option('backend', { type: 'string' })
            .option('json', { type: 'boolean', default: false }),
        (a) => runEval({ checkpoint: a.checkpoint, json: a.json, backend: a.backend, data: a.data }),
      )
      .command(
        'summary <checkpoint>',
        'layers, shapes, parameters, activation ranges and HE depth',
        (y) => y.positional('checkpoint', { type: 'string', demandOption: true }).option('json', { type: 'boolean', default: false }),
        (a) => runSummary({ checkpoint: a.checkpoint, json: a.json }),
      )
      .command(
        'he-validate <checkpoint>',
        'run the checkpoint on CKKS-encrypted inputs and compare with the plaintext model',
        (y) =>
          y
            .positional('checkpoint', { type: 'string', demandOption: true })
            .option('samples', { type: 'string', describe: 'held-out samples to encrypt (a number or "all")' })
            .option('packing', { type: 'string', default: 'auto', describe: 'auto (the cost model), batch (samples across slots), sample (one sample per pass: latency), stacked or stacked:M (M samples per ciphertext, in blocks), interleaved or interleaved:M (M samples innermost: every diagonal filled by all M)' })
            .option('params', { type: 'string', default: 'auto', describe: 'auto, or a JSON file {poly_modulus_degree, coeff_modulus_bits, scale_bits}' })
            .option('scale-bits', { type: 'number', describe: 'with --params auto: at least this CKKS scale in bits (20-40; more precision, maybe a larger ring)' })
            .option('mode', { type: 'string', default: 'encrypt', choices: ['encrypt', 'simulate'], describe: 'simulate: float64 with the same packing and rescale points, no encryption' })
            .option('trace', { type: 'boolean', default: false, describe: 'decrypt every layer (debug only) and report its error, level and scale' })
            .option('refresh', { type: 'string', choices: ['none', 'client'], describe: 'client: where the depth exceeds the chain, the client decrypts and re-encrypts at a fresh level (each refresh reported)' })
            .option('workers', { type: 'number', describe: 'server worker threads (default: one per core)' })
            .option('data', { type: 'string', describe: "folder the checkpoint's relative data paths are read from (a moved checkpoint or data set)" })
            .option('report', { type: 'string', describe: 'write a markdown report to this file' })
            .option('queue', { type: 'string', describe: 'redis://[:PASSWORD@]HOST:PORT: shard the samples into BullMQ jobs for `hepoly worker`s (docs/queue.md)' })
            .option('shard-size', { type: 'number', describe: 'with --queue: samples per job (default 4)' })
            .option('run-id', { type: 'string', describe: 'with --queue: name the run; re-run with the same id to resume (state in .hepoly-runs/ID)' })
            .option('json', { type: 'boolean', default: false }),
        (a) =>
          runHeValidate({
            queue: a.queue,
            shardSize: a.shardSize,
            runId: a.runId,
            checkpoint: a.checkpoint,
            samples: a.samples,
            packing: a.packing,
            params: a.params,
            scaleBits: a.scaleBits,
            mode: a.mode,
            trace: a.trace,
            workers: a.workers,
            refresh: a.refresh,
            report: a.report,
            json: a.json,
            data: a.data,
          }),
      )
      .command(
        'he-plan <checkpoint>',
        'rank packings (batch, sample, stacked, interleaved) by predicted latency, time per sample or memory; --measure runs them',
        (y) =>
          y
            .positional('checkpoint', { type: 'string', demandOption: true })
            .option('goal', { type: 'string', default: 'latency', describe: 'latency | throughput | memory' })
            .option('memory', { type: 'string', default: '8GiB', describe: 'memory limit, e.g. 8GiB or 512MiB' })
            .option('measure', { type: 'boolean', default: false, describe: 'also run each shown candidate once on SEAL and report measured vs predicted' })
            .option('top', { type: 'number', describe: 'candidates to show (default 5)' })
            .option('calibrate', { type: 'boolean', default: false, describe: 'redo the node-seal micro-benchmark instead of using the cached one' })
            .option('json', { type: 'boolean', default: false }),
        (a) => runHePlan({ checkpoint: a.checkpoint, goal: a.goal, memory: a.memory, measure: a.measure, top: a.top, calibrate: a.calibrate, json: a.json }),
      )
      .command(
        'prune <checkpoint>',
        'HE-aware pruning: remove whole units (ciphertexts) or small weights, then fine-tune with the mask fixed',
        (y) =>
          y
            .positional('checkpoint', { type: 'string', demandOption: true })
            .option('sparsity', { type: 'number', demandOption: true, describe: 'fraction of units (hepex) or weights (magnitude) to remove, in [0, 1)' })
            .option('method', { type: 'string', default: 'hepex', choices: ['hepex', 'magnitude'], describe: 'hepex: permute units and prune whole tiles; magnitude: smallest weights' })
            .option('tile', { type: 'number', default: 1, describe: 'units per tile (ciphertext); hepex prunes whole tiles' })
            .option('epochs', { type: 'number', default: 3, describe: 'fine-tuning epochs with the mask held fixed' })
            .option('lr', { type: 'number', describe: 'fine-tuning learning rate (default: a third of the recipe\'s)' })
            .option('expand', { type: 'boolean', default: true, describe: 'hepex: keep every weight of the surviving tiles' })
            .option('out', { type: 'string', describe: 'output checkpoint (default CHECKPOINT-METHOD-PERCENT)' })
            .option('overwrite', { type: 'boolean', default: false, describe: 'replace an existing checkpoint at --out' })
            .option('backend', { type: 'string' })
            .option('json', { type: 'boolean', default: false }),
        (a) => runPrune({ checkpoint: a.checkpoint, sparsity: a.sparsity, method: a.method, tile: a.tile, epochs: a.epochs, lr: a.lr, expand: a.expand, out: a.out, overwrite: a.overwrite, backend: a.backend, json: a.json }),
      )
      .command(
        'federate <target> [recipe]',
        'federated training: `federate RECIPE` runs every role here as separate processes; `federate coordinator RECIPE --port P` and `federate party RECIPE --name N --coordinator URL` run one role',
        (y) =>
          y
            .positional('target', { type: 'string', demandOption: true, describe: 'a recipe with a federated section, or the role: coordinator | party' })
            .positional('recipe', { type: 'string', describe: 'the recipe, after a role' })
            .option('set', { type: 'string', array: true, describe: 'override a recipe key (repeatable), passed to every role' })
            .option('out', { type: 'string', describe: 'checkpoint directory of the federated model (default checkpoints/<name>)' })
            .option('port', { type: 'number', describe: 'coordinator: port to listen on (0: any free port; default 8470)' })
            .option('host', { type: 'string', describe: 'coordinator: address to listen on (default 127.0.0.1; 0.0.0.0 to serve other machines)' })
            .option('name', { type: 'string', describe: 'party: its name in federated.parties' })
            .option('coordinator', { type: 'string', describe: 'party: the coordinator URL, e.g. http://127.0.0.1:8470' })
            .option('backend', { type: 'string' })
            .option('json', { type: 'boolean', default: false, describe: 'print a JSON object as the last line' }),
        (a) => runFederate({ target: a.target, recipe: a.recipe, set: a.set, out: a.out, port: a.port, host: a.host, name: a.name, coordinator: a.coordinator, backend: a.backend, json: a.json }),
      )
      .command(
        'make-data <kind>',
        'write a synthetic data set: payments (a payment network\'s transactions and two banks\' account tables, for recipes/payments-vfl.yaml)',
        (y) =>
          y
            .positional('kind', { type: 'string', demandOption: true, describe: 'payments' })
            .option('rows', { type: 'number', default: 5000, describe: 'transactions' })
            .option('seed', { type: 'number', default: 42 })
            .option('out', { type: 'string', default: 'datasets/federated/payments', describe: 'folder for transactions.csv, bank-a.csv, bank-b.csv' })
            .option('json', { type: 'boolean', default: false }),
        (a) => runMakeData({ kind: a.kind, rows: a.rows, seed: a.seed, out: a.out, json: a.json }),
      )
      .command(
        'sample <checkpoint>',
        'generate text with a character-level language model (a text recipe, e.g. charlm-poly)',
        (y) =>
          y
            .positional('checkpoint', { type: 'string', demandOption: true })
            .option('prompt', { type: 'string', default: '', describe: 'text to continue (at most the model\'s context, only characters of its vocabulary)' })
            .option('length', { type: 'number', default: 200, describe: 'characters to generate' })
            .option('temperature', { type: 'number', default: 0.8, describe: 'sampling temperature; 0 picks the most likely character' })
            .option('seed', { type: 'number', default: 0, describe: 'random seed of the sampling' })
            .option('backend', { type: 'string' })
            .option('json', { type: 'boolean', default: false }),
        (a) => runSample({ checkpoint: a.checkpoint, prompt: a.prompt, length: a.length, temperature: a.temperature, seed: a.seed, backend: a.backend, json: a.json }),
      )
      .command(
        'report <checkpoint>',
        'training report: loss, accuracy, learning rate, activation ranges, confusion matrix, layers (HTML, SVG, PNG)',
        (y) =>
          y
            .positional('checkpoint', { type: 'string', demandOption: true })
            .option('out', { type: 'string', describe: 'report folder (default CHECKPOINT/report)' })
            .option('backend', { type: 'string' })
            .option('json', { type: 'boolean', default: false }),
        (a) => runReport({ checkpoint: a.checkpoint, out: a.out, backend: a.backend, json: a.json }),
      )
      .command('ops', 'every layer op, its HE lowering and level cost, and which packings run it (docs/ops.md)', (y) => y.option('json', { type: 'boolean', default: false }), (a) => runOps({ json: a.json }))
      .command('schema', 'print the recipe JSON Schema (hepoly schema > recipe.schema.json), for editors and validators', (y) => y, () => runSchema())
      .command(
        'import <model>',
        'read an ONNX polynomial network (PyTorch / Keras export) into a hepoly checkpoint, checked against onnxruntime',
        (y) =>
          y
            .positional('model', { type: 'string', demandOption: true, describe: 'the .onnx file' })
            .option('data', { type: 'string', demandOption: true, describe: 'a recipe whose data: section (and optional name:) describes the data the model was trained on' })
            .option('layout', { type: 'string', choices: ['nchw', 'nhwc'], describe: 'input layout when the ONNX input shape does not tell (PyTorch: nchw, Keras: nhwc)' })
            .option('out', { type: 'string', describe: 'checkpoint directory (default checkpoints/<model file name>)' })
            .option('overwrite', { type: 'boolean', default: false, describe: 'replace an existing checkpoint at --out' })
            .option('backend', { type: 'string' })
            .option('json', { type: 'boolean', default: false }),
        (a) => runImport({ model: a.model, data: a.data, layout: a.layout, out: a.out, overwrite: a.overwrite, backend: a.backend, json: a.json }),
      )
      .command(
        'export <checkpoint>',
        'write deployable artifacts: --format he gives DIR/server (program, params; nothing secret) and DIR/client (params, preprocessing, layouts; no weights)',
        (y) =>
          y
            .positional('checkpoint', { type: 'string', demandOption: true })
            .option('format', { type: 'string', default: 'he', describe: 'he: encrypted-inference artifacts for hepoly serve / hepoly predict; onnx: the plaintext network as MODEL.onnx (--out MODEL.onnx)' })
            .option('out', { type: 'string', describe: 'output folder (gets server/ and client/)' })
            .option('packing', { type: 'string', default: 'sample', describe: 'sample (one sample per request: latency); the only one served so far' })
            .option('params', { type: 'string', default: 'auto', describe: 'auto, or a JSON file {poly_modulus_degree, coeff_modulus_bits, scale_bits}' })
            .option('refresh', { type: 'string', choices: ['none', 'client'], describe: 'client refreshes are not served yet (refused)' })
            .option('overwrite', { type: 'boolean', default: false, describe: 'replace an existing hepoly export at --out' })
            .option('json', { type: 'boolean', default: false }),
        (a) => runExport({ checkpoint: a.checkpoint, format: a.format, out: a.out, packing: a.packing, params: a.params, refresh: a.refresh, overwrite: a.overwrite, json: a.json }),
      )
      .command(
        'serve <dir>',
        'serve an exported DIR/server over HTTP: clients upload public evaluation keys once, then send ciphertexts (the server never holds a secret key)',
        (y) =>
          y
            .positional('dir', { type: 'string', demandOption: true, describe: 'the server artifact (DIR/server of hepoly export)' })
            .option('host', { type: 'string', default: '127.0.0.1' })
            .option('port', { type: 'number', default: 8080, describe: '0: any free port (printed)' })
            .option('keys', { type: 'string', describe: "folder of the clients' evaluation keys (default DIR-keys)" })
            .option('workers', { type: 'number', describe: 'evaluation worker threads (default: one per core)' })
            .option('token', { type: 'string', describe: 'require Authorization: Bearer TOKEN on every request' })
            .option('key-ttl', { type: 'number', describe: 'seconds an uploaded key set stays valid (default 7 days)' })
            .option('timeout', { type: 'number', describe: 'seconds one evaluation may take before its worker is replaced (default 600)' })
            .option('max-key-mb', { type: 'number', describe: 'largest key upload (default 512)' })
            .option('max-request-mb', { type: 'number', describe: 'largest prediction request (default 64)' })
            .option('cors', { type: 'string', describe: 'allow browser pages of this origin (* for any) to call the server' }),
        (a) => runServe({ dir: a.dir, host: a.host, port: a.port, keys: a.keys, workers: a.workers, token: a.token, keyTtl: a.keyTtl, timeout: a.timeout, maxKeyMb: a.maxKeyMb, maxRequestMb: a.maxRequestMb, cors: a.cors }),
      )
      .command(
        'worker',
        'evaluate he-validate --queue shard jobs from Redis (holds no secret key; docs/queue.md)',
        (y) =>
          y
            .option('queue', { type: 'string', demandOption: true, describe: 'redis://[:PASSWORD@]HOST:PORT (rediss:// for TLS)' })
            .option('concurrency', { type: 'number', describe: 'jobs at a time, each on its own worker thread (default 1)' })
            .option('lock-ms', { type: 'number', describe: "ms before a silent worker's job is given to another (default 30000)" }),
        (a) => runWorker({ queue: a.queue, concurrency: a.concurrency, lockMs: a.lockMs }),
      )
      .command(
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
      )
      .demandCommand(1, NO_COMMAND)
      .strict()
      .recommendCommands()
      .fail((msg, err) => {
        if (err) throw err;
        // the list is read from the registered commands, so a new command cannot be left out
        const commands = (parser as unknown as { getInternalMethods(): { getCommandInstance(): { getCommands(): string[] } } }).getInternalMethods().getCommandInstance().getCommands();
        const text = msg === NO_COMMAND ? `name a command: ${commands.join(', ')}` : msg;
        throw new HepolyError(`${text}\nRun \`hepoly --help\` for usage`, { exitCode: 2 });
      })
      .help()
      .version()
      .parseAsync();
    return 0;
  } catch (e) {
    if (e instanceof HepolyError) {
      process.stderr.write(`error: ${e.message}\n`);
      if (process.env.HEPOLY_DEBUG) process.stderr.write(`${e.stack}\n`);
      return e.exitCode;
    }
    if ((e instanceof WebAssembly.RuntimeError && /Aborted/.test(e.message)) || (e instanceof Error && /std::bad_alloc/.test(e.message))) {
      // SEAL's wasm heap cannot grow past its limit; the abort carries no further detail
      process.stderr.write(
        'error: SEAL aborted: its WebAssembly memory ran out. Use smaller CKKS parameters (--params), fewer --workers or fewer --samples per run; for MLP and CNN checkpoints, also another --packing (sample needs the least memory; stacked and interleaved passes keep more diagonals encoded)\n',
      );
      if (process.env.HEPOLY_DEBUG) process.stderr.write(`${e.stack}\n`);
      return 1;
    }
    process.stderr.write(`internal error (please report it): ${(e as Error)?.stack ?? String(e)}\n`);
    return 70;
  }
}

export function cli(): void {
  main(hideBin(process.argv)).then((code) => {
    process.exitCode = code;
  });
}
