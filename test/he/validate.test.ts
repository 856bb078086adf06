import { expect } from 'chai';
import { readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadRecipe } from '../../src/recipe/load.js';
import { train } from '../../src/train/loop.js';
import { HepolyError } from '../../src/util/errors.js';
import { validate, reportJson } from '../../src/he/validate.js';
import { reportMarkdown } from '../../src/he/report.js';
import { runHeValidate } from '../../src/cli/he-validate.js';
import { defaultCachePath } from '../../src/he/tiles/calibrate.js';
import { tempDir } from '../helpers/tmp.js';

/** A small real checkpoint: the quickstart recipe shrunk to seconds of training. */
async function trainTiny(dir: string, set: string[]): Promise<string> {
  const { recipe } = loadRecipe('recipes/quickstart.yaml', ['train.epochs=3', 'model.hidden=[8, 4]', ...set]);
  await train({ recipe, recipeFile: 'quickstart.yaml', outDir: dir, callbacks: {} });
  return dir;
}

async function expectRefusal(p: Promise<unknown>, pattern: RegExp): Promise<void> {
  try {
    await p;
  } catch (e) {
    expect(e).to.be.instanceOf(HepolyError);
    expect((e as Error).message).to.match(pattern);
    return;
  }
  expect.fail('expected a HepolyError');
}

describe('he/validate: the he-validate pipeline', function () {
  this.timeout(300000);
  const tmp = tempDir('hepoly-he-');
  let ckpt = '';
  before(async () => {
    ckpt = await trainTiny(join(tmp.path, 'quad'), []);
  });
  after(() => tmp.cleanup());

  it('encrypts, evaluates and decrypts held-out samples: full agreement, small logit error, a complete report', async () => {
    const r = await validate({ checkpoint: ckpt, samples: 24, packing: 'batch', workers: 2 });
    expect(r.mode).to.equal('encrypt');
    expect(r.packing).to.equal('batch');
    expect(r.samples).to.equal(24);
    expect(r.agreement).to.equal(1);
    expect(r.encryptedAccuracy).to.equal(r.plaintextAccuracy);
    expect(r.maxAbsError).to.be.below(1e-3 * r.logitRange);
    expect(r.params.securityBits).to.equal(128);
    expect(r.params.totalBits).to.be.at.most(r.params.maxBitsFor128);
    expect(r.params.levels).to.be.at.least(r.depth);
    expect(r.ops.ptMults).to.be.above(0);
    expect(r.ops.ctCtMults).to.be.above(0);
    expect(r.ciphertexts.input).to.equal(30);
    expect(r.bytes.clientToServer).to.be.above(r.bytes.keys);
    expect(r.timings.evaluateMs).to.be.above(0);
    const md = reportMarkdown(r);
    for (const h of ['## Agreement', '## Parameters', '## Level budget per layer', '## Cost']) expect(md).to.include(h);
  });

  it('--mode simulate runs the same schedule without encryption, in sample packing too', async () => {
    const r = await validate({ checkpoint: ckpt, samples: 12, packing: 'sample', mode: 'simulate', trace: true, workers: 2 });
    expect(r.mode).to.equal('simulate');
    expect(r.packing).to.equal('sample');
    expect(r.agreement).to.equal(1);
    expect(r.ops.rotations).to.be.above(0);
    expect(r.layerErrors!.length).to.be.above(3);
    for (const e of r.layerErrors!) expect(e.maxAbsError).to.be.below(1e-2 * Math.max(1, e.maxAbsValue));
  });

  it('--packing stacked:4 encrypts 4 samples per ciphertext; 7 samples (a partial last pass) agree with the plaintext model', async () => {
    const one = await validate({ checkpoint: ckpt, samples: 7, packing: 'sample', workers: 2 });
    const r = await validate({ checkpoint: ckpt, samples: 7, packing: 'stacked:4', workers: 2 });
    expect(r.packing).to.equal('stacked x4');
    expect(r.samplesPerPass).to.equal(4);
    expect(r.agreement).to.equal(1);
    expect(r.encryptedAccuracy).to.equal(r.plaintextAccuracy);
    expect(r.maxAbsError).to.be.below(1e-3 * r.logitRange);
    // two passes instead of seven: fewer ciphertexts uploaded, and the logits match sample packing's
    expect(r.ciphertexts.input).to.equal(2 * (one.ciphertexts.input / 7));
    expect(r.ciphertexts.input).to.be.below(one.ciphertexts.input);
    expect(r.maxAbsError).to.be.below(1e-3 * r.logitRange + one.maxAbsError);
  });

  it('--packing interleaved:8 (samples innermost) on SEAL: 11 samples in 2 passes agree with the plaintext model, every traced layer too', async () => {
    const r = await validate({ checkpoint: ckpt, samples: 11, packing: 'interleaved:8', workers: 2, trace: true });
    expect(r.packing).to.equal('interleaved x8');
    expect(r.samplesPerPass).to.equal(8);
    expect(r.agreement).to.equal(1);
    expect(r.maxAbsError).to.be.below(1e-3 * r.logitRange);
    // --trace decrypts each layer of the pass, unstacks its samples and compares each with the plaintext program
    expect(r.layerErrors!.length).to.be.above(3);
    for (const e of r.layerErrors!) {
      expect(e.maxAbsValue, e.label).to.be.above(0);
      expect(e.maxAbsError, e.label).to.be.below(1e-2 * Math.max(1, e.maxAbsValue));
    }
  });

  it('--packing stacked lets the cost model choose M and traces every layer; bad --packing values are refused', async () => {
    const r = await validate({ checkpoint: ckpt, samples: 8, packing: 'stacked', mode: 'simulate', workers: 1 });
    expect(r.packing).to.match(/^stacked x\d+$/);
    expect(r.samplesPerPass).to.be.at.least(2);
    expect(r.packingReason).to.match(/cost model/);
    expect(r.agreement).to.equal(1);
    for (const bad of ['stacked:1', 'stacked:x', 'interleaved:0', 'diagonal']) {
      await expectRefusal(validate({ checkpoint: ckpt, samples: 2, packing: bad as 'auto' }), /--packing: expected auto, batch, sample, token, stacked, interleaved, stacked:M or interleaved:M/);
    }
    const traced = await validate({ checkpoint: ckpt, samples: 5, packing: 'stacked:2', mode: 'simulate', trace: true });
    expect(traced.layerErrors!.length).to.be.above(3);
    for (const e of traced.layerErrors!) expect(e.maxAbsError, e.label).to.be.below(1e-2 * Math.max(1, e.maxAbsValue));
    await expectRefusal(validate({ checkpoint: ckpt, samples: 2, packing: 'stacked:4096', mode: 'simulate' }), /stacked/);
    await expectRefusal(validate({ checkpoint: ckpt, samples: 2, packing: 'interleaved:3', mode: 'simulate' }), /--packing interleaved:3: M must be a power of two that divides the \d+ slots.*interleaved:4/);
  });

  it('--json prints one JSON object with the documented keys as the last stdout line', async () => {
    const lines: string[] = [];
    const orig = console.log;
    console.log = (...a: unknown[]) => void lines.push(a.join(' '));
    try {
      await runHeValidate({ checkpoint: ckpt, samples: 4, mode: 'simulate', packing: 'sample', json: true, report: join(tmp.path, 'r.md') });
    } finally {
      console.log = orig;
    }
    const j = JSON.parse(lines[lines.length - 1]) as Record<string, unknown>;
    for (const k of ['samples', 'plaintext_accuracy', 'encrypted_accuracy', 'agreement', 'max_abs_error', 'latency_ms_per_sample', 'amortized_ms_per_sample', 'ciphertexts', 'poly_modulus_degree', 'coeff_modulus_bits', 'security_bits', 'packing']) {
      expect(j, k).to.have.property(k);
    }
    expect(j.samples).to.equal(4);
    expect(readFileSync(join(tmp.path, 'r.md'), 'utf8')).to.include('# Encrypted validation');
    // a multi-sample packing says how many samples a pass serves
    lines.length = 0;
    console.log = (...a: unknown[]) => void lines.push(a.join(' '));
    try {
      await runHeValidate({ checkpoint: ckpt, samples: 6, mode: 'simulate', packing: 'interleaved:4', json: true });
    } finally {
      console.log = orig;
    }
    const k = JSON.parse(lines[lines.length - 1]) as Record<string, unknown>;
    expect(k.packing).to.equal('interleaved x4');
    expect(k.samples_per_pass).to.equal(4);
    expect(k.agreement).to.equal(1);
    expect(lines.join('\n')).to.match(/a pass serves 4/);
  });

  it('refuses a relu checkpoint with one message naming the layer and the fix', async () => {
    const relu = await trainTiny(join(tmp.path, 'relu'), ['model.activation={kind: relu}']);
    await expectRefusal(validate({ checkpoint: relu, samples: 2 }), /layer act1 \(activation relu\), act2 \(activation relu\) is not a polynomial.*activation: quad.*distill/);
  });

  it('refuses a network too deep for any 128-bit-secure parameters', async () => {
    // 40 quads overflow at inference after one epoch: train says so and keeps the checkpoint, which is all this needs
    const deep = join(tmp.path, 'deep');
    await trainTiny(deep, [`model.hidden=[${new Array(40).fill(2).join(', ')}]`, 'train.epochs=1']).catch((e: Error) => expect(e.message).to.match(/overflows at inference/));
    await expectRefusal(validate({ checkpoint: deep, samples: 2 }), /no 128-bit-secure CKKS parameters fit this network: it needs multiplicative depth 81/);
  });

  it('refuses --params FILE with too few levels, naming depth needed vs available', async () => {
    const f = join(tmp.path, 'params.json');
    writeFileSync(f, JSON.stringify({ poly_modulus_degree: 8192, coeff_modulus_bits: [40, 30, 30, 40], scale_bits: 30 }));
    await expectRefusal(validate({ checkpoint: ckpt, samples: 2, params: f }), /params\.json: coeff_modulus_bits: the network needs depth 5 but these 4 primes give 2 levels/);
  });

  it('refuses a corrupt checkpoint, naming the file', async () => {
    const bad = await trainTiny(join(tmp.path, 'corrupt'), ['train.epochs=1']);
    truncateSync(join(bad, 'weights.bin'), 100);
    await expectRefusal(validate({ checkpoint: bad, samples: 2 }), /corrupt.*weights\.bin|weights\.bin.*(truncated|bytes)/);
  });

  it('--scale-bits 40 buys precision under SEAL (smaller max logit error than the default scale) with a larger ring; out-of-range values are refused', async () => {
    const base = await validate({ checkpoint: ckpt, samples: 4, packing: 'batch', workers: 2 });
    const precise = await validate({ checkpoint: ckpt, samples: 4, packing: 'batch', workers: 2, scaleBits: 40 });
    expect(base.params.scaleBits).to.be.below(40);
    expect(precise.params.scaleBits).to.equal(40);
    expect(precise.params.polyModulusDegree).to.be.above(base.params.polyModulusDegree);
    expect(precise.params.totalBits).to.be.at.most(precise.params.maxBitsFor128);
    // CKKS error scales like 2^-scale_bits: a 2^40 scale is at least 10 bits finer, so expect
    // (much) more than 16x less error on the same samples
    expect(base.maxAbsError).to.be.above(0);
    // the factor depends on the default scale auto picks for this tiny net and on noise floors: strictly smaller is what this checks
    expect(precise.maxAbsError).to.be.below(base.maxAbsError);
    await expectRefusal(validate({ checkpoint: ckpt, samples: 2, scaleBits: 50 }), /--scale-bits: expected a whole number from 20 to 40, found 50/);
    const f = join(tmp.path, 'p40.json');
    writeFileSync(f, JSON.stringify({ poly_modulus_degree: 16384, coeff_modulus_bits: [60, 40, 40, 40, 40, 40, 60], scale_bits: 40 }));
    await expectRefusal(validate({ checkpoint: ckpt, samples: 2, params: f, scaleBits: 40 }), /--scale-bits applies to --params auto/);
  });

  it('this run caches calibrations in a temporary file of its own, not the shared temp folder (test/helpers/calibration-cache.ts)', () => {
    const path = defaultCachePath();
    expect(path).to.not.equal(join(tmpdir(), 'hepoly-he-calibration.json'));
    expect(path).to.match(/hepoly-calibration-[^/]+\/calibration\.json$/);
  });

  it('reportJson carries the parameters actually used', async () => {
    const r = await validate({ checkpoint: ckpt, samples: 3, mode: 'simulate', packing: 'batch' });
    const j = reportJson(r);
    expect(j.poly_modulus_degree).to.equal(r.params.polyModulusDegree);
    expect(j.coeff_modulus_bits).to.deep.equal(r.params.coeffModulusBits);
    expect(j.security_bits).to.equal(128);
  });
});
