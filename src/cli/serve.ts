import { HepolyError } from '../util/errors.js';
import { defineCommand } from './command.js';

/** Options of `hepoly serve`, as the CLI parses them. */
export interface ServeArgs {
  dir: string;
  host?: string;
  port?: number;
  keys?: string;
  workers?: number;
  token?: string;
  keyTtl?: number;
  timeout?: number;
  maxKeyMb?: number;
  maxRequestMb?: number;
  cors?: string;
  sessionTtl?: number;
  queue?: string;
  diagonalCache?: string;
  workersPerSample?: number;
}

/**
 * `hepoly serve DIR/server`: serves until SIGINT or SIGTERM. The first stdout line names the
 * URL (with --port 0, the port the system chose).
 */
export async function runServe(a: ServeArgs): Promise<void> {
  const positive = (v: number | undefined, flag: string) => {
    if (v !== undefined && !(Number.isFinite(v) && v > 0)) throw new HepolyError(`${flag}: expected a positive number, found ${v}`, { exitCode: 2 });
    return v;
  };
  if (a.port !== undefined && !(Number.isInteger(a.port) && a.port >= 0 && a.port < 65536)) throw new HepolyError(`--port: expected 0-65535, found ${a.port}`, { exitCode: 2 });
  const { DeployServer } = await import('../deploy/server/server.js');
  const { parseMemory } = await import('../he/tiles/optimizer.js');
  const server = await DeployServer.start({
    artifactDir: a.dir,
    host: a.host,
    port: a.port,
    keysDir: a.keys,
    workers: positive(a.workers, '--workers'),
    token: a.token,
    keyTtlMs: (positive(a.keyTtl, '--key-ttl') ?? 7 * 24 * 3600) * 1000,
    timeoutMs: (positive(a.timeout, '--timeout') ?? 600) * 1000,
    maxKeyBytes: (positive(a.maxKeyMb, '--max-key-mb') ?? 512) * 2 ** 20,
    maxRequestBytes: a.maxRequestMb === undefined ? undefined : positive(a.maxRequestMb, '--max-request-mb')! * 2 ** 20,
    corsOrigin: a.cors,
    sessionTtlMs: (positive(a.sessionTtl, '--session-ttl') ?? 600) * 1000,
    queue: a.queue,
    keptDiagonalBytes: a.diagonalCache === undefined ? undefined : parseMemory(a.diagonalCache, undefined, '--diagonal-cache'),
    workersPerSample: positive(a.workersPerSample, '--workers-per-sample'),
  });
  const m = server.artifact.manifest;
  console.log(`serving ${a.dir} on ${server.url}`);
  console.log(`model ${m.digest.slice(0, 12)}: input [${m.input_shape.join(', ')}], ${m.classes} classes, N=${m.params.polyModulusDegree}, ${m.rotation_steps.length} rotation steps${m.refresh_rounds ? `, ${m.refresh_rounds} client refresh round(s) per request` : ''}; keys in ${server.keys.dir}; ${a.queue ? 'evaluated by hepoly workers on the queue' : `${server.pool.size} workers${(a.workersPerSample ?? 1) > 1 ? `, ${a.workersPerSample} on each request` : ''}`}${a.token ? '; bearer token required' : ''}`);
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  await server.close();
}

export const serveCommand = defineCommand(
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
      .option('max-request-mb', { type: 'number', describe: "largest prediction or refresh request (default 64, or twice the model's largest refresh round of one pass)" })
      .option('cors', { type: 'string', describe: 'allow browser pages of this origin (* for any) to call the server' })
      .option('session-ttl', { type: 'number', describe: 'seconds a client has to send back a refresh round (--refresh client exports; default 600)' })
      .option('queue', { type: 'string', describe: 'redis://HOST:PORT: hand evaluations to hepoly workers on this BullMQ queue instead of local threads (sample packing)' })
      .option('workers-per-sample', { type: 'number', describe: 'sample packing: threads that evaluate each request together, for latency (a divisor of --workers; default 1: one request per thread, for throughput)' })
      .option('diagonal-cache', { type: 'string', describe: "per worker: memory for a --refresh client model's encoded diagonals kept between requests, e.g. 1GiB (default 3GiB, which holds resnet-poly's; past it, a segment's are encoded again each request)" }),
  (a) =>
    runServe({ dir: a.dir, host: a.host, port: a.port, keys: a.keys, workers: a.workers, token: a.token, keyTtl: a.keyTtl, timeout: a.timeout, maxKeyMb: a.maxKeyMb, maxRequestMb: a.maxRequestMb, cors: a.cors, sessionTtl: a.sessionTtl, queue: a.queue, diagonalCache: a.diagonalCache, workersPerSample: a.workersPerSample }),
);
