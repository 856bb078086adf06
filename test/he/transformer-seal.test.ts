import { expect } from 'chai';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { hepoly } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';
import { validate } from '../../src/he/validate.js';
import { HepolyError } from '../../src/util/errors.js';
import { compileCheckpoint } from '../../src/he/compile.js';
import { loadCheckpoint } from '../../src/train/checkpoint.js';
import { blocksFor, foldTokens, packTokens, tokenFoldProblem } from '../../src/he/packing/token-fold.js';

/**
 * A tiny character LM (power-softmax attention, batchnorm, quad) through the one compiler and
 * the shared he-validate: encrypted on the client, evaluated by the server's worker threads
 * from public bytes only, decrypted on the client. Its depth exceeds any ring this test can
 * afford, so it runs with client refresh, and is refused without it.
 */
describe('transformer he-validate through the shared compiler and server', function () {
  this.timeout(300000);
  const tmp = tempDir();
  after(() => tmp.cleanup());
  const out = join(tmp.path, 'ckpt');
  // 3 tokens do not divide any ring's slots: token packing keeps copies of the tokens
  const out3 = join(tmp.path, 'ckpt3');

  before(async () => {
    await tf.setBackend('cpu');
    const text = join(tmp.path, 'tiny.txt');
    writeFileSync(text, 'the cat sat on the mat. the dog sat on the log.\n'.repeat(40));
    for (const [context, dir] of [[4, out], [3, out3]] as const) {
      const recipe = join(tmp.path, `lm${context}.yaml`);
      writeFileSync(
        recipe,
        `name: tiny-lm
data: {source: text, path: ${JSON.stringify(text)}, context: ${context}, split: {validation: 0.1, test: 0.1}}
model: {kind: transformer, task: lm, layers: 1, dim: 8, heads: 2, mlp_ratio: 1, attention: {kind: power-softmax, p: 2}, norm: batchnorm}
train: {epochs: 2, batch: 64, optimizer: {kind: adam, lr: 0.01}}
`,
      );
      const r = hepoly(['train', recipe, '--out', dir, '--json']);
      expect(r.code, r.stderr).to.equal(0);
    }
  });

  it('simulated CKKS: the compiled program, token-packed (auto) in the server\'s worker threads with client refresh, agrees with plaintext; every refresh is named', async () => {
    // the worker threads, the bytes between them and the client's refreshes are the real ones;
    // the dot, gather and per-token kernels run under SEAL in sequence-ir.test.ts
    // a fixed N=8192 chain: since the Goldschmidt division the tiny LM also fits N=32768 uncut, which
    // --params auto may pick on a fast-timed calibration, and simulating 16,384 slots is slow
    const params = join(tmp.path, 'refresh-params.json');
    writeFileSync(params, JSON.stringify({ poly_modulus_degree: 8192, coeff_modulus_bits: [44, 30, 30, 30, 30, 44], scale_bits: 30 }));
    const lines: string[] = [];
    const r = await validate({ checkpoint: out, samples: 6, params, mode: 'simulate', refresh: 'client', workers: 2, log: (l) => lines.push(l) });
    expect(r.packing).to.equal('token');
    // the client checked what it decrypted at every refresh point against the plaintext program
    const checks = lines.filter((l) => /^ {2}refresh \d+\/\d+ \(/.test(l));
    expect(new Set(checks.map((l) => l.match(/refresh (\d+)\//)![1])).size).to.equal(r.refreshes!.perPass);
    for (const l of checks) expect(Number(l.match(/max error (\S+)/)![1])).to.be.below(0.1);
    expect(r.params.polyModulusDegree).to.be.oneOf([4096, 8192]);
    expect(r.params.securityBits).to.equal(128);
    expect(r.depth).to.be.above(r.params.levels);
    expect(r.agreement).to.equal(1);
    expect(r.maxAbsError).to.be.below(1e-2);
    expect(r.refreshes!.perPass).to.be.above(0);
    expect(r.refreshes!.points.map((p) => p.before).join(' ')).to.match(/b1_attn/);
    expect(r.ops.ctCtMults).to.be.above(0);
    // where the pass's time went: attention's products by role, and the client's refreshes
    const components = r.latencyBreakdown.map((p) => p.component);
    expect(components).to.include.members(['attention scores', 'attention values', 'attention division', 'client refreshes']);
    expect(r.latencyBreakdown.reduce((a, p) => a + p.share, 0)).to.be.closeTo(1, 1e-9);
    expect(r.latencyBreakdown.every((p) => p.ms > 0)).to.equal(true);
  });

  it('real SEAL, token and batch packing: encrypted on the client, evaluated on ciphertexts by the worker threads with client refresh, decrypted: both agree with plaintext, token packing refreshing T times fewer ciphertexts', async () => {
    // N=4096, one level per segment (the separation check's chain): small ciphertexts, many refreshes
    const params = join(tmp.path, 'seal-params.json');
    writeFileSync(params, JSON.stringify({ poly_modulus_degree: 4096, coeff_modulus_bits: [41, 27, 41], scale_bits: 27 }));
    const run = (packing: 'token' | 'batch') => validate({ checkpoint: out, samples: 4, params, packing, mode: 'encrypt', refresh: 'client', workers: 2 });
    const token = await run('token');
    const batch = await run('batch');
    for (const r of [token, batch]) {
      expect(r.mode).to.equal('encrypt');
      expect(r.refreshes!.perPass).to.be.above(0);
      expect(r.agreement).to.equal(1);
      expect(r.maxAbsError).to.be.below(1e-2);
      expect(r.ops.ctCtMults).to.be.above(0);
    }
    expect(token.packing).to.equal('token');
    // the same cut, each refresh carrying one ciphertext per feature instead of per element (4 tokens)
    expect(token.refreshes!.perPass).to.equal(batch.refreshes!.perPass);
    const sent = (r: typeof token) => r.refreshes!.points.reduce((a, p) => a + p.ciphertexts, 0);
    expect(sent(token) * 4).to.be.at.most(sent(batch) * 1.25);
    // the other tokens are read by rotating whole token blocks: the server got Galois keys for them
    expect(token.ops.rotations).to.be.above(0);
    expect(batch.ops.rotations).to.equal(0);
  });

  it('token packing folds the per-token tensors onto token blocks: a ciphertext per feature, rotations by whole blocks, and the client packs each input element into its block', () => {
    const program = compileCheckpoint(loadCheckpoint(out));
    const slots = 4096;
    const fold = foldTokens(program, slots);
    const T = fold.tokens;
    expect(T).to.equal(4);
    expect(fold.stride).to.equal(slots / T);
    // every [T, F] tensor of the batch program is F ciphertexts here
    program.tensors.forEach((t, id) => {
      if (t.shape.length !== 2 || t.shape[0] !== T || id === program.input) return;
      const folded = fold.origin.indexOf(id);
      expect(folded, t.label).to.be.at.least(0);
      expect(fold.program.tensors[folded].shape, t.label).to.deep.equal([t.shape[1]]);
    });
    expect(fold.rotationSteps.length).to.be.within(1, T - 1);
    for (const s of fold.rotationSteps) expect(s % fold.stride === 0 && s > 0 && s < slots, String(s)).to.equal(true);
    // sample 2's element e lands in slot token(e) * S + 2 of ciphertext feature(e)
    const per = fold.input.token.length;
    const x = Float64Array.from({ length: 3 * per }, (_, i) => i + 1);
    const vecs = packTokens(fold, x, 3, slots);
    for (let e = 0; e < per; e++) expect(vecs[fold.input.feature[e]][fold.input.token[e] * fold.stride + 2]).to.equal(x[2 * per + e]);
  });

  it('token packing with 3 tokens (no power of two): block b holds token b mod 3, enough blocks that the first 3 stay right after the rotations; real SEAL agrees with plaintext', async () => {
    const program = compileCheckpoint(loadCheckpoint(out3));
    const fold = foldTokens(program, 4096);
    expect(fold.tokens).to.equal(3);
    // one attention reads offsets up to 2 after the 3 tokens: 3 + 2 -> 8 blocks
    expect(fold.blocks).to.equal(blocksFor(3, 2));
    expect(fold.blocks).to.equal(8);
    expect(fold.stride).to.equal(4096 / 8);
    const per = fold.input.token.length;
    const x = Float64Array.from({ length: 2 * per }, (_, i) => i + 1);
    const vecs = packTokens(fold, x, 2, 4096);
    // sample 1's element e sits in every block holding its token: 3 blocks for tokens 0 and 1, 2 for token 2
    for (let e = 0; e < per; e++) {
      const blocks = [0, 1, 2, 3, 4, 5, 6, 7].filter((b) => b % 3 === fold.input.token[e]);
      expect(blocks.length).to.equal(fold.input.token[e] < 2 ? 3 : 2);
      for (const b of blocks) expect(vecs[fold.input.feature[e]][b * fold.stride + 1], `element ${e}, block ${b}`).to.equal(x[per + e]);
    }
    const params = join(tmp.path, 'seal-params3.json');
    writeFileSync(params, JSON.stringify({ poly_modulus_degree: 4096, coeff_modulus_bits: [41, 27, 41], scale_bits: 27 }));
    const r = await validate({ checkpoint: out3, samples: 4, params, packing: 'token', mode: 'encrypt', refresh: 'client', workers: 2 });
    expect(r.packing).to.equal('token');
    expect(r.agreement).to.equal(1);
    expect(r.maxAbsError).to.be.below(1e-2);
    expect(r.ops.rotations).to.be.above(0);
  });

  it('token packing refuses a sequence longer than the slots, naming it and the fix', () => {
    const program = compileCheckpoint(loadCheckpoint(out));
    expect(tokenFoldProblem(program, 4096)).to.equal(true);
    expect(tokenFoldProblem(program, 2)).to.match(/a block of slots per token: 4 tokens, 2 slots; use batch packing or larger --params/);
    expect(() => foldTokens(program, 2)).to.throw(HepolyError, /block of slots per token/);
    expect(blocksFor(16, 30)).to.equal(16);
    expect(blocksFor(24, 46)).to.equal(128);
  });

  it('without refresh, a network deeper than the chain is refused with depth needed vs available and the options', async () => {
    const params = join(tmp.path, 'params.json');
    writeFileSync(params, JSON.stringify({ poly_modulus_degree: 8192, coeff_modulus_bits: [40, 30, 30, 30, 30, 40], scale_bits: 30 }));
    let err: unknown = null;
    try {
      await validate({ checkpoint: out, samples: 4, params, mode: 'simulate' });
    } catch (e) {
      err = e;
    }
    expect(err).to.be.instanceOf(HepolyError);
    expect((err as Error).message).to.match(/depth \d+ but .*4 levels.*--refresh client/);
  });

  it('sample, stacked and interleaved packing are refused for attention with the reason and the fix', async () => {
    for (const packing of ['sample', 'stacked:2', 'interleaved:2'] as const) {
      let err: unknown = null;
      try {
        await validate({ checkpoint: out, samples: 2, packing, mode: 'simulate', refresh: 'client' });
      } catch (e) {
        err = e;
      }
      expect((err as Error).message, packing).to.match(/attention multiplies arbitrary pairs of elements.*use --packing token, batch or auto/);
    }
  });

  it('the CLI dispatches a transformer checkpoint (simulated: --mode simulate, client refresh, JSON report)', () => {
    const params = join(tmp.path, 'cli-params.json');
    writeFileSync(params, JSON.stringify({ poly_modulus_degree: 8192, coeff_modulus_bits: [44, 30, 30, 30, 30, 44], scale_bits: 30 }));
    const r = hepoly(['he-validate', out, '--samples', '3', '--params', params, '--mode', 'simulate', '--refresh', 'client', '--json']);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.json!.agreement).to.equal(1);
    expect((r.json!.refreshes as { per_pass: number }).per_pass).to.be.above(0);
    expect(r.json!.refreshes_per_pass).to.equal((r.json!.refreshes as { per_pass: number }).per_pass);
  });

  it('the CLI refuses --params auto without --refresh when no secure ring holds the depth, naming the options', () => {
    // since the Goldschmidt division this LM's depth (21) fits N=32768 at the default scale;
    // at 40-bit scale it needs 934 bits of the 881 the largest secure ring allows
    const r = hepoly(['he-validate', out, '--samples', '3', '--scale-bits', '40']);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(/^error: no 128-bit-secure CKKS parameters fit this network: it needs multiplicative depth \d+ .*the largest secure ring \(N=32768\) allows 881 bits, i\.e\. depth \d+\. .*or pass --refresh client/);
  });
});
