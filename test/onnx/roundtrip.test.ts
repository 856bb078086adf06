import { expect } from 'chai';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { exportOnnx } from '../../src/onnx/export.js';
import { importCheckpoint } from '../../src/onnx/import.js';
import { loadCheckpoint } from '../../src/train/checkpoint.js';
import { validate, type ValidationReport } from '../../src/he/validate.js';
import { initBackend } from '../../src/train/backend.js';
import { tempDir } from '../helpers/tmp.js';
import { makeCheckpoint } from './checkpoints.js';

/** The he-validate figures that describe the encrypted program: they must survive export + import. */
function figures(r: ValidationReport) {
  return {
    samples: r.samples,
    packing: r.packing,
    depth: r.depth,
    ops: r.ops,
    ciphertexts: r.ciphertexts,
    rotationKeys: r.rotationKeys,
    poly_modulus_degree: r.params.polyModulusDegree,
    // batchnorms cost no level (they fold into the layer before); the import may fold them already
    levels: r.layers.map((l) => l.levels).filter((l) => l > 0),
    plaintextAccuracy: r.plaintextAccuracy,
    encryptedAccuracy: r.encryptedAccuracy,
    agreement: r.agreement,
  };
}

describe('onnx round trip: export --format onnx, then import, gives the same HE program', function () {
  this.timeout(600000);
  const tmp = tempDir('hepoly-onnx-rt-');
  let backend = '';
  before(async () => {
    backend = await initBackend();
  });
  after(() => tmp.cleanup());

  async function roundTrip(which: 'mlp' | 'cnn-csv' | 'resnet-csv'): Promise<{ original: string; imported: string }> {
    const original = await makeCheckpoint(join(tmp.path, which), which);
    const onnx = join(tmp.path, `${which}.onnx`);
    exportOnnx(loadCheckpoint(original), onnx);
    const r = await importCheckpoint({ model: onnx, data: join(original, 'recipe.yaml'), out: join(tmp.path, `${which}-imported`), backend });
    // 1e-4 at logit scale 1; random-init quads on a residual stream reach logits of tens
    expect(r.max_abs_diff).to.be.below(1e-4 * Math.max(1, r.max_abs_logit));
    expect(r.accuracy).to.equal(r.onnx_accuracy);
    // a sequential network gets the recipe that rebuilds it; a residual one a stand-in
    expect(r.model_section).to.equal(which === 'resnet-csv' ? 'stand-in' : 'exact');
    if (which === 'mlp') {
      // the import folds each batchnorm into the dense layer before it, so the rebuilt mlp has none
      const { hidden, activation } = loadCheckpoint(original).recipe.model as { hidden: number[]; activation: unknown };
      expect(loadCheckpoint(r.checkpoint).recipe.model).to.deep.equal({ kind: 'mlp', hidden, batchnorm: false, activation });
    }
    return { original, imported: r.checkpoint };
  }

  for (const [which, packing] of [['mlp', 'batch'], ['cnn-csv', 'sample'], ['resnet-csv', 'batch']] as const) {
    it(`${which}: --mode simulate (${packing} packing) reports the same operation counts, levels and agreement`, async () => {
      const { original, imported } = await roundTrip(which);
      const a = await validate({ checkpoint: original, samples: 8, packing, mode: 'simulate', workers: 1 });
      const b = await validate({ checkpoint: imported, samples: 8, packing, mode: 'simulate', workers: 1 });
      expect(a.ops.ptMults).to.be.above(0);
      expect(figures(b)).to.deep.equal(figures(a));
    });
  }

  it('mlp on SEAL (N chosen by --params auto, 4 samples): encrypted figures equal the original checkpoint\'s', async () => {
    // the simulate test above made them; made here when run alone (mocha -g SEAL)
    const { original, imported } = existsSync(join(tmp.path, 'mlp-imported')) ? { original: join(tmp.path, 'mlp'), imported: join(tmp.path, 'mlp-imported') } : await roundTrip('mlp');
    const a = await validate({ checkpoint: original, samples: 4, packing: 'batch', workers: 1 });
    const b = await validate({ checkpoint: imported, samples: 4, packing: 'batch', workers: 1 });
    expect(a.mode).to.equal('encrypt');
    expect(a.agreement).to.equal(1);
    expect(figures(b)).to.deep.equal(figures(a));
    expect(b.maxAbsError).to.be.below(1e-2 * Math.max(1, b.logitRange));
  });
});
