import { Worker, type WorkerOptions } from 'node:worker_threads';

/**
 * A worker thread running module `name` beside the caller (`callerUrl`: its import.meta.url):
 * `name`.js when compiled; under tsx (tests, benches) `name`.ts through a bootstrap that
 * registers tsx first, since worker threads do not inherit its loader.
 */
export function spawnModuleWorker(callerUrl: string, name: string, options: WorkerOptions = {}): Worker {
  if (!callerUrl.endsWith('.ts')) return new Worker(new URL(`./${name}.js`, callerUrl), options);
  const url = new URL(`./${name}.ts`, callerUrl).href;
  return new Worker(`import('tsx/esm/api').then((m) => { m.register(); return import(${JSON.stringify(url)}); });`, { ...options, eval: true });
}
