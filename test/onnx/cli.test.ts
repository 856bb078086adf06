import { expect } from 'chai';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { hepoly } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';
import { DATA_RECIPE, FIXTURES } from './fixtures.js';

/** `hepoly import` and `hepoly export --format onnx` end to end, through the built CLI. */
describe('hepoly import / export --format onnx (CLI)', function () {
  this.timeout(300000);
  const tmp = tempDir('hepoly-onnx-cli-');
  after(() => tmp.cleanup());
  const ckpt = join(tmp.path, 'poly-cnn');

  it('import: --json last line names the checkpoint, layers, activations, accuracy and max_abs_diff; eval, summary and he-validate read it', () => {
    const r = hepoly(['import', join(FIXTURES, 'poly_cnn.onnx'), '--data', DATA_RECIPE, '--out', ckpt, '--json']);
    expect(r.code, r.stderr).to.equal(0);
    const j = r.json!;
    expect(j.checkpoint).to.equal(ckpt);
    expect(j.layers).to.deep.equal(['conv2d', 'activation', 'avgpool', 'conv2d', 'activation', 'avgpool', 'flatten', 'dense', 'activation', 'dense']);
    expect((j.activations as { kind: string }[]).map((a) => a.kind)).to.deep.equal(['square', 'quad', 'quad']);
    expect(j.max_abs_diff as number).to.be.below(1e-4);
    expect(j.accuracy).to.equal(j.onnx_accuracy);
    expect(j.split).to.equal('test');
    expect(j.samples).to.equal(64);
    const e = hepoly(['eval', ckpt, '--json']);
    expect(e.code, e.stderr).to.equal(0);
    expect(e.json!.accuracy).to.equal(j.accuracy);
    const s = hepoly(['summary', ckpt, '--json']);
    expect(s.code, s.stderr).to.equal(0);
    expect(s.json!.he_ready).to.equal(true);
    const v = hepoly(['he-validate', ckpt, '--samples', '4', '--mode', 'simulate', '--packing', 'sample', '--workers', '1', '--json']);
    expect(v.code, v.stderr).to.equal(0);
    expect(v.json!.agreement).to.equal(1);
  });

  it('prune and fine-tuning (init_from) start from the imported checkpoint: its recipe rebuilds the same network', () => {
    const p = hepoly(['prune', ckpt, '--sparsity', '0.25', '--epochs', '1', '--out', join(tmp.path, 'pruned'), '--json']);
    expect(p.code, p.stderr).to.equal(0);
    expect((p.json!.units as Record<string, { before: number; after: number }>).dense1).to.deep.equal({ before: 32, after: 24 });
    const t = hepoly(['train', join(ckpt, 'recipe.yaml'), '--set', `init_from=${ckpt}`, '--set', 'train.epochs=1', '--out', join(tmp.path, 'tuned'), '--json']);
    expect(t.code, t.stderr).to.equal(0);
    expect(t.json!.epochs).to.equal(1);
  });

  it('export --format onnx writes MODEL.onnx; importing it again gives the same logits', () => {
    const out = join(tmp.path, 'again.onnx');
    const r = hepoly(['export', ckpt, '--format', 'onnx', '--out', out, '--json']);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.json!.opset).to.equal(17);
    expect(existsSync(out)).to.equal(true);
    const again = hepoly(['import', out, '--data', DATA_RECIPE, '--out', join(tmp.path, 'again'), '--json']);
    expect(again.code, again.stderr).to.equal(0);
    expect(again.json!.layers).to.deep.equal(['conv2d', 'activation', 'avgpool', 'conv2d', 'activation', 'avgpool', 'flatten', 'dense', 'activation', 'dense']);
    expect(again.json!.max_abs_diff as number).to.be.below(1e-4);
  });

  it('a model exported with a fixed batch of 1 (torch.onnx.export without dynamic_axes) imports and checks sample by sample', () => {
    const r = hepoly(['import', join(FIXTURES, 'fixed_batch.onnx'), '--data', DATA_RECIPE, '--out', join(tmp.path, 'fixed'), '--json']);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.json!.samples).to.equal(64);
    expect(r.json!.max_abs_diff as number).to.be.below(1e-4);
    expect((r.json!.activations as { kind: string }[]).map((a) => a.kind)).to.deep.equal(['quad']);
  });

  it('a non-polynomial model: exit 1, one error line naming the node and the fix, nothing written', () => {
    const out = join(tmp.path, 'relu');
    const r = hepoly(['import', join(FIXTURES, 'relu.onnx'), '--data', DATA_RECIPE, '--out', out]);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(/^error: test\/fixtures\/onnx\/relu\.onnx: node '\/1\/Relu' \(Relu\): Relu is not a polynomial/);
    expect(r.stderr).to.include('distill.teacher: MODEL.onnx');
    expect(r.stderr).to.not.match(/internal error|    at /);
    expect(existsSync(out)).to.equal(false);
    expect(readdirSync(tmp.path).filter((f) => /\.(tmp|prev)-/.test(f))).to.deep.equal([]);
  });

  it('bad command lines: exit 2', () => {
    expect(hepoly(['import', join(FIXTURES, 'poly_cnn.onnx'), '--data', DATA_RECIPE, '--layout', 'nwhc']).code).to.equal(2);
    const r = hepoly(['export', ckpt, '--format', 'onnx']);
    expect(r.code).to.equal(2);
    expect(r.stderr).to.match(/--out MODEL\.onnx: required/);
  });
});
