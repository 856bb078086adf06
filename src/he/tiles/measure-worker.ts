import { parentPort } from 'node:worker_threads';
import { evaluatePass } from './measure.js';

/** The evaluating side of one measured pass, in a fresh thread (its own SEAL heap). */
const port = parentPort;
if (!port) throw new Error('he/tiles/measure-worker.ts must run in a worker thread');
port.once('message', (r: Parameters<typeof evaluatePass>[0]) => {
  evaluatePass(r).then(
    (result) => port.postMessage({ ok: true, result }),
    (e: Error) => port.postMessage({ ok: false, message: e.stack ?? e.message }),
  );
});
