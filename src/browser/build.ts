import { fileURLToPath } from 'node:url';
import { HepolyError } from '../util/errors.js';

/**
 * Bundles src/browser/entry.ts for browsers with esbuild (a devDependency: only whoever builds
 * the bundle needs it). platform 'browser' makes esbuild pick node-seal's `browser` build and
 * fail on any node: import, so a successful build is itself the check that the client path
 * reads no files. Returns the bundle's size and the source files it holds.
 */
export async function buildBrowserBundle(outfile: string): Promise<{ bytes: number; inputs: string[] }> {
  let esbuild: typeof import('esbuild');
  try {
    esbuild = await import('esbuild');
  } catch {
    throw new HepolyError('the browser bundle needs esbuild: run `npm install --save-dev esbuild` in the hepoly folder');
  }
  const isTs = import.meta.url.endsWith('.ts');
  const entry = fileURLToPath(new URL(isTs ? './entry.ts' : './entry.js', import.meta.url));
  const r = await esbuild.build({
    entryPoints: [entry],
    bundle: true,
    platform: 'browser',
    format: 'iife',
    globalName: 'hepoly',
    target: 'es2022',
    outfile,
    // node-seal's web build reaches for require("url") only where there is no document (it
    // embeds its wasm, so a page never gets there); left as a runtime require, never taken
    external: ['url'],
    metafile: true,
    logLevel: 'silent',
  });
  const out = Object.values(r.metafile.outputs)[0];
  return { bytes: out.bytes, inputs: Object.keys(r.metafile.inputs) };
}
