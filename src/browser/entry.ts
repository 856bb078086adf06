/**
 * The browser bundle's entry: the client library of a deployed model (keys, encryption,
 * decryption, the HTTP calls), nothing that touches a file system. Built by build.ts into one
 * script that defines `window.hepoly`; node-seal's web build carries SEAL's wasm inside.
 */
export * from '../deploy/client/index.js';
