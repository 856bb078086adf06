import { parentPort } from 'node:worker_threads';
import { type PassRequest, measurePass } from './measure.js';

/** Runs one measured pass in a fresh thread (its own SEAL heap) and posts the result. */
const port = parentPort;
if (!port) throw new Error('he/tiles/measure-worker.ts must run in a worker thread');
port.once('message', (r: PassRequest) => {
  measurePass(r).then(
    (result) => port.postMessage({ ok: true, result }),
    (e: Error) => port.postMessage({ ok: false, message: e.stack ?? e.message }),
  );
});
