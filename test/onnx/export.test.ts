import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { exportOnnx, toOnnxModel, EXPORT_OPSET } from '../../src/onnx/export.js';
import { decodeModel } from '../../src/onnx/proto.js';
import { runOnnx } from '../../src/onnx/ort.js';
import { loadCheckpoint } from '../../src/train/checkpoint.js';
import { heldOutSplit } from '../../src/train/evaluate.js';
import { predict } from '../../src/models/tf-interpreter.js';
import { sequenceNode } from '../../src/models/graph.js';
import { initBackend } from '../../src/train/backend.js';
import { HepolyError } from '../../src/util/errors.js';
import { allOps, getOp, registerOp, unregisterOp } from '../../src/ops/registry.js';
import type { OpDef } from '../../src/ops/types.js';
import { tempDir } from '../helpers/tmp.js';
import { makeCheckpoint, MODELS } from './checkpoints.js';
import { INSTALL_ONNX, pythonWithOnnx } from './fixtures.js';

const CHECK = `
import sys, onnx
for path in sys.argv[1:]:
    m = onnx.load(path)
    onnx.checker.check_model(m, full_check=True)
    print(path, 'ok')
`;

describe('onnx/export: hepoly checkpoints as standard ONNX models', function () {
  this.timeout(300000);
  const tmp = tempDir('hepoly-onnx-export-');
  const exported: string[] = [];
  before(async () => {
    await initBackend();
  });
  after(() => tmp.cleanup());

  for (const which of Object.keys(MODELS)) {
    it(`${which}: onnxruntime runs the export and gives hepoly's logits within 1e-4 on the held-out split`, async () => {
      const ckpt = loadCheckpoint(await makeCheckpoint(join(tmp.path, which), which));
      const out = join(tmp.path, `${which}.onnx`);
      const r = exportOnnx(ckpt, out);
      exported.push(out);
      expect(r.opset).to.be.at.most(17);
      const split = await heldOutSplit(ckpt);
      const ours = predict(ckpt.graph, ckpt.weights, split.x, split.count);
      const layout = ckpt.graph.inputShape.length === 3 ? 'nchw' : 'flat';
      const theirs = await runOnnx(out, split.x, split.count, { inputShape: ckpt.graph.inputShape, layout, classes: ckpt.graph.classes, why: 'the export test' });
      const maxAbs = Math.max(...ours.map((v) => Math.abs(v)));
      const diff = Math.max(...ours.map((v, i) => Math.abs(v - theirs[i])));
      expect(maxAbs, 'logits are not all zero').to.be.above(1e-3);
      expect(diff, `max |logit difference| (${which})`).to.be.below(1e-4 * Math.max(1, maxAbs));
    });
  }

  it('standard ai.onnx ops only, polynomials as Mul/Add, a dynamic batch axis and the preprocessing in metadata', () => {
    expect(exported).to.have.length(Object.keys(MODELS).length);
    for (const path of exported) {
      const m = decodeModel(readFileSync(path));
      expect(m.opset_import).to.deep.equal([{ domain: '', version: EXPORT_OPSET }]);
      const ops = new Set(m.graph!.node!.map((n) => n.op_type));
      for (const op of ops) expect(['Gemm', 'Conv', 'Mul', 'Add', 'AveragePool', 'GlobalAveragePool', 'Flatten', 'Transpose', 'BatchNormalization', 'Pad']).to.include(op);
      expect(m.graph!.node!.every((n) => !n.domain)).to.equal(true);
      expect(m.graph!.input![0].type!.tensor_type!.shape!.dim![0]).to.deep.equal({ dim_param: 'batch' });
      const meta = Object.fromEntries(m.metadata_props!.map((p) => [p.key, p.value]));
      expect(JSON.parse(meta['hepoly.labels']!)).to.have.length.above(1);
      expect(JSON.parse(meta['hepoly.normalize']!)).to.have.property('kind');
      expect(meta['hepoly.input_layout']).to.match(/^(NCHW|flat)$/);
    }
  });

  it('the ONNX checker (full_check, with shape inference) accepts every export', function () {
    const py = pythonWithOnnx();
    if (!py) expect.fail(INSTALL_ONNX);
    const r = spawnSync(py, ['-c', CHECK, ...exported], { encoding: 'utf8' });
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stdout.trim().split('\n')).to.have.length(exported.length);
  });

  it('refuses transformer layers with the layer name and what can be exported', async () => {
    const ckpt = loadCheckpoint(join(tmp.path, 'mlp'));
    const graph = { ...ckpt.graph, inputShape: [4, 8], nodes: [sequenceNode('tokens', { op: 'token_dense', units: 2, bias: false }, ['input'])], output: 'tokens' };
    expect(() => toOnnxModel({ ...ckpt, graph })).to.throw(HepolyError, /layer tokens \(token_dense\): the token_dense op has no ONNX face \(src\/ops\/sequence\.ts\).*transformer layers are not exported yet/);
  });

  it('writes every layer through its op\'s ONNX face: a registered op without one is refused by layer, op and file before anything is written', () => {
    // the shipped ops that MLP, CNN and ResNet checkpoints use all carry the face
    expect(allOps().filter((d) => d.family !== 'sequence' && !d.onnx).map((d) => d.name)).to.deep.equal([]);
    const ckpt = loadCheckpoint(join(tmp.path, 'mlp'));
    const { onnx: _face, ...flattenWithoutFace } = getOp('flatten');
    registerOp({ ...flattenWithoutFace, name: 'flatten_no_onnx_test', family: 'structure' } as unknown as OpDef);
    try {
      const first = ckpt.graph.nodes[0];
      const graph = { ...ckpt.graph, nodes: [{ ...first, name: 'flat0', layer: { op: 'flatten_no_onnx_test' } as unknown as typeof first.layer, inputs: [first.inputs[0]] }, ...ckpt.graph.nodes.map((n, i) => (i === 0 ? { ...n, inputs: ['flat0'] } : n))] };
      expect(() => toOnnxModel({ ...ckpt, graph })).to.throw(HepolyError, /layer flat0 \(flatten_no_onnx_test\): the flatten_no_onnx_test op has no ONNX face \(src\/ops\/structure\.ts\)/);
    } finally {
      unregisterOp('flatten_no_onnx_test'); // the registry is per process: later tests list every op
    }
    expect(() => registerOp({ ...flattenWithoutFace, name: 'flatten_half_onnx_test', onnx: {} } as unknown as OpDef)).to.throw(HepolyError, /op flatten_half_onnx_test has an onnx face without an export function/);
  });
});
