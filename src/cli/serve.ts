import { HepolyError } from '../util/errors.js';
import { DeployServer } from '../deploy/server/server.js';

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
    maxRequestBytes: (positive(a.maxRequestMb, '--max-request-mb') ?? 64) * 2 ** 20,
    corsOrigin: a.cors,
  });
  const m = server.artifact.manifest;
  console.log(`serving ${a.dir} on ${server.url}`);
  console.log(`model ${m.digest.slice(0, 12)}: input [${m.input_shape.join(', ')}], ${m.classes} classes, N=${m.params.polyModulusDegree}, ${m.rotation_steps.length} rotation steps; keys in ${server.keys.dir}; ${server.pool.size} workers${a.token ? '; bearer token required' : ''}`);
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  await server.close();
}
