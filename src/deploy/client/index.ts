/**
 * The client library of a deployed model, for Node and browsers: nothing here imports node:fs
 * (the browser bundle, src/browser/entry.ts, is built from this module).
 */
export { HEClient, type ClientKeyMaterial, sha256Hex } from './he-client.js';
export { RemoteModel, RemoteError, type RemoteOptions, type RemotePrediction, type KeyOwner, type Refresher } from './remote-model.js';
export { DEFAULT_RETRY, type RetryPolicy } from './retry.js';
export { preprocessSample, argmax } from './preprocess.js';
export { packInput, unpackOutput } from './layout.js';
export { ClientArtifactSchema, type ClientArtifact } from '../artifact-format.js';
export { encodeFrames, decodeFrames } from '../framing.js';
