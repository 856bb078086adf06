import { expect } from 'chai';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readOnnxModel } from '../../src/onnx/read.js';
import { importOnnxGraph, type ImportedNetwork } from '../../src/onnx/import-graph.js';
import { AttrType, decodeModel, encodeModel, type ModelProto } from '../../src/onnx/proto.js';
import { floatTensor } from '../../src/onnx/tensor.js';
import { modelSection } from '../../src/onnx/model-section.js';
import { buildGraph } from '../../src/models/build.js';
import { summarize } from '../../src/models/summary.js';
import { predict } from '../../src/models/tf-interpreter.js';
import { initBackend } from '../../src/train/backend.js';
import { HepolyError } from '../../src/util/errors.js';
import { tempDir } from '../helpers/tmp.js';
import { FIXTURES, firstTestImages, fixtureList } from './fixtures.js';

const FMNIST = { dataShape: [28, 28, 1], classes: 10, dataWhere: 'test data' };

function importFixture(file: string, extra: Partial<Parameters<typeof importOnnxGraph>[1]> = {}): ImportedNetwork {
  const path = join(FIXTURES, file);
  return importOnnxGraph(readOnnxModel(path), { file: path, ...FMNIST, ...extra });
}

function expectRefusal(f: () => unknown, ...patterns: RegExp[]): void {
  let err: unknown;
  try {
    f();
  } catch (e) {
    err = e;
  }
  expect(err, 'expected a HepolyError').to.be.instanceOf(HepolyError);
  for (const p of patterns) expect((err as Error).message).to.match(p);
}

describe('onnx/import: ONNX graphs into hepoly networks', function () {
  this.timeout(120000);
  let images: { x: Float32Array; count: number };
  const tmp = tempDir('hepoly-onnx-');
  before(async () => {
    await initBackend();
    images = await firstTestImages();
  });
  after(() => tmp.cleanup());

  for (const f of fixtureList().filter((x) => x.logits)) {
    it(`${f.file} (${f.layout.toUpperCase()}, opset ${f.opset}): hepoly's logits equal PyTorch's within 1e-4`, () => {
      const net = importFixture(f.file);
      expect(net.layout).to.equal(f.layout);
      const ours = predict(net.graph, net.weights, images.x, images.count);
      const expected = f.logits!.flat();
      expect(ours.length).to.equal(expected.length);
      const maxDiff = Math.max(...expected.map((v, i) => Math.abs(v - ours[i])));
      expect(maxDiff, `max |logit difference| on ${f.file}`).to.be.below(1e-4);
    });
  }

  it('the fixtures cover every op the importer claims (read from the files themselves)', () => {
    const seen = new Set<string>();
    for (const f of fixtureList().filter((x) => x.logits)) {
      for (const n of decodeModel(readFileSync(join(FIXTURES, f.file))).graph!.node!) seen.add(n.op_type!);
    }
    const claimed = ['Gemm', 'MatMul', 'Add', 'Conv', 'AveragePool', 'GlobalAveragePool', 'BatchNormalization', 'Flatten', 'Reshape', 'Transpose', 'Pad', 'Mul', 'Sub', 'Div', 'Pow', 'Constant', 'Identity', 'Dropout', 'Neg', 'Shape', 'Gather', 'Concat', 'Unsqueeze'];
    expect(claimed.filter((op) => !seen.has(op))).to.deep.equal([]);
  });

  it('polynomial subgraphs become hepoly activations with the same HE cost as a hepoly-built network', () => {
    const net = importFixture('poly_cnn.onnx');
    expect(net.activations.map((a) => a.kind)).to.deep.equal(['square', 'quad', 'quad']);
    // a*x*x + b*x + c: five ONNX nodes, one quad (c, b, a ascending), one level
    expect(net.activations[1].onnx_nodes).to.have.length(5);
    const { model, exact } = modelSection(net.graph);
    expect(exact).to.equal(true);
    const rebuilt = buildGraph(model, [28, 28, 1], 10);
    expect(rebuilt.nodes.map((n) => n.layer.op)).to.deep.equal(['conv2d', 'activation', 'avgpool', 'conv2d', 'activation', 'avgpool', 'flatten', 'dense', 'activation', 'dense']);
    const imported = summarize(net.graph, null);
    const native = summarize(rebuilt, null);
    expect(imported.he_depth).to.equal(native.he_depth);
    expect(imported.layers.map((l) => l.he_depth)).to.deep.equal(native.layers.map((l) => l.he_depth));
    // conv -> square -> pool -> conv(+BN folded) -> quad -> pool -> dense -> quad -> dense: 4 linear + 3 activations
    expect(imported.he_depth).to.equal(7);
  });

  it('MatMul + Add is one dense layer with its bias; Pow(x, 2) a square; BatchNormalization a batchnorm', () => {
    const net = importFixture('mlp_matmul.onnx');
    expect(net.graph.nodes.map((n) => n.layer.op)).to.deep.equal(['flatten', 'dense', 'activation', 'batchnorm', 'dense']);
    expect(net.graph.nodes[1].layer).to.deep.include({ op: 'dense', units: 16, bias: true });
    expect(net.activations.map((a) => a.kind)).to.deep.equal(['square']);
  });

  it('NHWC input with PyTorch padding on stride-2 convs: explicit pads, a cubic polynomial activation', () => {
    const net = importFixture('cnn_nhwc.onnx');
    expect(net.layout).to.equal('nhwc');
    expect(net.graph.nodes.map((n) => n.layer.op)).to.deep.equal(['pad', 'conv2d', 'activation', 'pad', 'conv2d', 'activation', 'flatten', 'dense']);
    expect(net.activations[1].kind).to.equal('poly');
    expect(net.activations[1].coeffs.map((c) => +c.toFixed(6))).to.deep.equal([0.1, 1, 0.2, 0.05]);
  });

  it('residual adds, subtraction of a tensor and a BatchNormalization after a square', () => {
    const net = importFixture('residual.onnx');
    const ops = net.graph.nodes.map((n) => n.layer.op);
    expect(ops.filter((o) => o === 'add')).to.have.length(3);
    expect(ops).to.include.members(['pad', 'batchnorm', 'avgpool', 'global_avgpool']);
    expect(modelSection(net.graph).exact).to.equal(false);
  });

  it('grouped and depthwise convolutions (group=2, group=C) import as hepoly grouped convs', () => {
    const net = importFixture('grouped.onnx');
    const convs = net.graph.nodes.filter((n) => n.layer.op === 'conv2d').map((n) => (n.layer as { groups?: number }).groups ?? 1);
    expect(convs).to.deep.equal([1, 2, 4]);
    expect(modelSection(net.graph).exact).to.equal(true);
  });

  it('a hand-built graph: Identity and Dropout pass through, Constant and Neg fold into one quad', () => {
    const net = importFixture('misc_ops.onnx');
    expect(net.graph.nodes.map((n) => n.layer.op)).to.deep.equal(['flatten', 'dense', 'activation', 'dense']);
    expect(net.activations[0]).to.deep.include({ kind: 'quad', coeffs: [0, -1, 0.25] });
  });

  for (const f of fixtureList().filter((x) => x.refused)) {
    it(`refuses ${f.file}: names the ${f.refused} node and the fix`, () => {
      const nodeName = decodeModel(readFileSync(join(FIXTURES, f.file))).graph!.node!.find((n) => n.op_type === f.refused)!.name!;
      const fix =
        f.refused === 'Conv' ? /dilations \[2,2\].*export with dilation 1/ : f.refused === 'Reshape' ? /cannot be resolved.*flat vector/ : /not a polynomial.*distill into a hepoly student: `distill.teacher: MODEL.onnx`/;
      expectRefusal(() => importFixture(f.file), new RegExp(`poly_cnn|${f.file}`), new RegExp(`node '${nodeName.replace(/[/.]/g, '\\$&')}' \\(${f.refused}\\)`), fix);
    });
  }

  it('refuses data of another shape, naming both shapes', () => {
    expectRefusal(() => importFixture('poly_cnn.onnx', { dataShape: [30], dataWhere: 'recipe.yaml: data' }), /input 'input' is \[N, 1, 28, 28\]/, /recipe\.yaml: data gives samples of shape \[30\]/);
    expectRefusal(() => importFixture('poly_cnn.onnx', { dataShape: [32, 32, 3] }), /expected \[N, 3, 32, 32\] \(NCHW\)/);
    expectRefusal(() => importFixture('poly_cnn.onnx', { classes: 3 }), /has 3 classes/);
  });

  it('refuses a forced layout the input does not have', () => {
    expectRefusal(() => importFixture('poly_cnn.onnx', { layout: 'nhwc' }), /not NHWC.*fix --layout/);
  });

  it('an input shape that fits NCHW and NHWC needs --layout; each layout reads the tensor its own way', () => {
    // [N, 3, 3, 3] -> Flatten -> Gemm: the flatten order, hence the logits, depend on the layout
    const w = Array.from({ length: 27 * 2 }, (_, i) => Math.sin(i));
    const model: ModelProto = {
      ir_version: 8,
      opset_import: [{ domain: '', version: 13 }],
      graph: {
        node: [
          { op_type: 'Flatten', name: 'flat', input: ['x'], output: ['f'], attribute: [{ name: 'axis', type: AttrType.INT, i: 1 }] },
          { op_type: 'Gemm', name: 'fc', input: ['f', 'w'], output: ['y'] },
        ],
        initializer: [floatTensor('w', [27, 2], w)],
        input: [{ name: 'x', type: { tensor_type: { elem_type: 1, shape: { dim: [{ dim_param: 'N' }, { dim_value: 3 }, { dim_value: 3 }, { dim_value: 3 }] } } } }],
        output: [{ name: 'y', type: { tensor_type: { elem_type: 1, shape: { dim: [{ dim_param: 'N' }, { dim_value: 2 }] } } } }],
      },
    };
    const path = join(tmp.path, 'cube.onnx');
    writeFileSync(path, encodeModel(model));
    const o = { file: path, dataShape: [3, 3, 3], classes: 2, dataWhere: 'cube data' };
    expectRefusal(() => importOnnxGraph(readOnnxModel(path), o), /could be NCHW or NHWC/, /--layout nchw \(PyTorch exports\)/);
    const x = Float32Array.from({ length: 27 }, (_, i) => i / 27); // one NHWC sample, x[h][w][c] at (h*3 + w)*3 + c
    const logitsFor = (layout: 'nchw' | 'nhwc') => {
      const net = importOnnxGraph(readOnnxModel(path), { ...o, layout });
      return Array.from(predict(net.graph, net.weights, x, 1));
    };
    // what the ONNX model computes: it flattens its own input order
    const expected = (order: (h: number, wd: number, c: number) => number) => [0, 1].map((u) => {
      let sum = 0;
      for (let h = 0; h < 3; h++) for (let wd = 0; wd < 3; wd++) for (let c = 0; c < 3; c++) sum += x[(h * 3 + wd) * 3 + c] * w[order(h, wd, c) * 2 + u];
      return sum;
    });
    const close = (a: number[], b: number[]) => a.every((v, i) => Math.abs(v - b[i]) < 1e-5);
    expect(close(logitsFor('nchw'), expected((h, wd, c) => (c * 3 + h) * 3 + wd))).to.equal(true);
    expect(close(logitsFor('nhwc'), expected((h, wd, c) => (h * 3 + wd) * 3 + c))).to.equal(true);
  });

  it('refuses unreadable files: missing, not ONNX, truncated', () => {
    expectRefusal(() => readOnnxModel(join(tmp.path, 'nope.onnx')), /nope\.onnx: file not found/);
    const junk = join(tmp.path, 'junk.onnx');
    writeFileSync(junk, 'this is not a protobuf at all \u00ff\u00fe');
    expectRefusal(() => readOnnxModel(junk), /junk\.onnx: cannot read it as an ONNX model/, /Export it again/);
    const cut = join(tmp.path, 'cut.onnx');
    writeFileSync(cut, readFileSync(join(FIXTURES, 'poly_cnn.onnx')).subarray(0, 3000));
    expectRefusal(() => readOnnxModel(cut), /cut\.onnx: cannot read it as an ONNX model/);
  });
});
