#!/usr/bin/env python3
"""Small ONNX fixtures for hepoly's import tests (test/onnx/): one file per group of supported
ops, one per refusal, NCHW and NHWC inputs. Weights are random (seeded): the tests compare
hepoly's logits with the expected ones below, so training would add nothing.

  apt-get install -y python3-torch python3-onnx
  /usr/bin/python3 scripts/make_onnx_fixtures.py     # writes test/fixtures/onnx/*.onnx and fixtures.json

fixtures.json lists each file with the ops it covers and, for the importable ones, the
logits of the first 8 Fashion-MNIST test images (pixel/255, NCHW or NHWC as the file says).
"""
import json, os, sys
import numpy as np
import onnx
from onnx import helper, numpy_helper, TensorProto
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_onnx_teacher import load  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, 'test', 'fixtures', 'onnx')


class Quad(nn.Module):
    def __init__(self, a=0.1, b=1.0, c=0.0):
        super().__init__()
        self.a, self.b, self.c = (nn.Parameter(torch.tensor(v)) for v in (a, b, c))

    def forward(self, x):
        return self.a * x * x + self.b * x + self.c


class MlpMatMul(nn.Module):
    """view(x.size(0), -1) (Shape/Gather/Concat/Reshape), MatMul + Add, Pow(x, 2), BatchNorm1d, Sub, Div, Gemm."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(784, 16) * 0.05)
        self.b = nn.Parameter(torch.randn(16) * 0.1)
        self.bn = nn.BatchNorm1d(16)
        self.out = nn.Linear(16, 10)

    def forward(self, x):
        h = x.view(x.size(0), -1) @ self.w + self.b
        h = self.bn(torch.pow(h, 2))
        h = (h - 0.5) / 2.0
        return self.out(h)


class CnnNhwc(nn.Module):
    """NHWC input (Keras-style): Transpose to NCHW, Conv stride 2 with PyTorch padding (a Pad layer
    in hepoly), Mul(x, x), Conv, a cubic polynomial, Transpose to NHWC before Flatten, Gemm."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 3, 3, stride=2, padding=1)
        self.c2 = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.fc = nn.Linear(7 * 7 * 4, 10)

    def forward(self, x):
        x = x.permute(0, 3, 1, 2)
        h = self.c1(x)
        h = h * h
        h = self.c2(h)
        h = 0.05 * h * h * h + 0.2 * h * h + h + 0.1
        h = h.permute(0, 2, 3, 1).flatten(1)
        return self.fc(h)


class Residual(nn.Module):
    """ZeroPad2d (Pad), Conv (valid), BatchNorm2d after an activation, residual Add, Sub of two
    tensors, AvgPool2d, GlobalAveragePool, Flatten of NCHW (Gemm rows permuted), Constant."""

    def __init__(self):
        super().__init__()
        self.pad = nn.ZeroPad2d(2)
        self.stem = nn.Conv2d(1, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.c1 = nn.Conv2d(4, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 4, 1)
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(4 * 15 * 15, 10)
        self.fc2 = nn.Linear(4, 10)

    def forward(self, x):
        h = self.stem(self.pad(x))
        h = self.bn(h * h)
        r = self.c1(h)
        h = h + r * r * torch.tensor(0.5)
        h = h - self.c2(h)
        p = self.pool(h)
        return self.fc(p.flatten(1)) + self.fc2(F.adaptive_avg_pool2d(h, 1).flatten(1))


def tiny(act):
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), act, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 10))


def export(model, name, x, opset, layout='nchw'):
    path = os.path.join(OUT, name)
    model.eval()
    torch.onnx.export(model, x[:1], path, input_names=['input'], output_names=['logits'],
                      dynamic_axes={'input': {0: 'batch'}, 'logits': {0: 'batch'}}, opset_version=opset)
    return path


def logits_of(model, x):
    with torch.no_grad():
        return [[float(v) for v in row] for row in model(x).tolist()]


def misc_ops(path, x):
    """Built with onnx.helper, for ops PyTorch never emits in eval mode: Identity, Dropout, Neg,
    Constant (value_float), MatMul without bias, Flatten of NHWC, a Gemm with transB=0 and alpha/beta."""
    rng = np.random.default_rng(1)
    w1 = rng.normal(0, 0.05, (784, 12)).astype(np.float32)
    w2 = rng.normal(0, 0.2, (12, 10)).astype(np.float32)
    b2 = rng.normal(0, 0.1, (10,)).astype(np.float32)
    nodes = [
        helper.make_node('Flatten', ['input'], ['f'], name='flatten', axis=1),
        helper.make_node('MatMul', ['f', 'w1'], ['h'], name='matmul'),
        helper.make_node('Dropout', ['h'], ['hd'], name='dropout'),
        helper.make_node('Identity', ['hd'], ['hi'], name='identity'),
        helper.make_node('Constant', [], ['k'], name='const_a', value_float=0.25),
        helper.make_node('Mul', ['hi', 'hi'], ['sq'], name='square'),
        helper.make_node('Mul', ['sq', 'k'], ['sqa'], name='scale'),
        helper.make_node('Neg', ['hi'], ['neg'], name='neg'),
        helper.make_node('Add', ['sqa', 'neg'], ['act'], name='quad'),
        helper.make_node('Gemm', ['act', 'w2', 'b2'], ['logits'], name='gemm', alpha=0.5, beta=2.0, transB=0),
    ]
    graph = helper.make_graph(nodes, 'misc', [helper.make_tensor_value_info('input', TensorProto.FLOAT, ['batch', 28, 28, 1])],
                              [helper.make_tensor_value_info('logits', TensorProto.FLOAT, ['batch', 10])],
                              [numpy_helper.from_array(w1, 'w1'), numpy_helper.from_array(w2, 'w2'), numpy_helper.from_array(b2, 'b2')])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 13)])
    onnx.checker.check_model(model)
    onnx.save(model, path)
    xn = x.permute(0, 2, 3, 1).reshape(len(x), -1).numpy()
    h = xn @ w1
    act = 0.25 * h * h - h
    return (0.5 * act @ w2 + 2.0 * b2).tolist()


def main():
    torch.set_num_threads(2)
    torch.manual_seed(0)
    os.makedirs(OUT, exist_ok=True)
    xt, _ = load('test')
    x = xt[:8]
    fixtures = []

    def add(name, model, opset, covers, layout='nchw'):
        inp = x.permute(0, 2, 3, 1).contiguous() if layout == 'nhwc' else x
        export(model, name, inp, opset, layout)
        fixtures.append({'file': name, 'layout': layout, 'opset': opset, 'covers': covers, 'logits': logits_of(model.eval(), inp)})

    with torch.no_grad():
        mlp = MlpMatMul()
        mlp.bn.running_mean.uniform_(0, 0.5)
        mlp.bn.running_var.uniform_(0.5, 2)
        res = Residual()
        res.bn.running_mean.uniform_(0, 0.5)
        res.bn.running_var.uniform_(0.5, 2)
    add('mlp_matmul.onnx', mlp, 11, ['Shape', 'Gather', 'Unsqueeze', 'Concat', 'Reshape', 'MatMul', 'Add', 'Pow', 'BatchNormalization', 'Sub', 'Div', 'Gemm'])
    add('cnn_nhwc.onnx', CnnNhwc(), 13, ['Transpose', 'Conv', 'Mul', 'Add', 'Flatten', 'Gemm'], layout='nhwc')
    add('residual.onnx', res, 13, ['Pad', 'Conv', 'Mul', 'BatchNormalization', 'Add', 'Sub', 'AveragePool', 'GlobalAveragePool', 'Flatten', 'Gemm', 'Constant'])
    path = os.path.join(OUT, 'misc_ops.onnx')
    fixtures.append({'file': 'misc_ops.onnx', 'layout': 'nhwc', 'opset': 13, 'covers': ['Flatten', 'MatMul', 'Dropout', 'Identity', 'Constant', 'Mul', 'Neg', 'Add', 'Gemm'], 'logits': misc_ops(path, x)})

    # exported without dynamic_axes, as torch.onnx.export does by default: batch fixed to 1
    fixed = nn.Sequential(nn.Conv2d(1, 2, 5, stride=3), Quad(0.2, 0.5, 0.1), nn.Flatten(), nn.Linear(2 * 8 * 8, 10))
    fixed.eval()
    torch.onnx.export(fixed, x[:1], os.path.join(OUT, 'fixed_batch.onnx'), input_names=['input'], output_names=['logits'], opset_version=13)
    fixtures.append({'file': 'fixed_batch.onnx', 'layout': 'nchw', 'opset': 13, 'covers': ['Conv', 'Mul', 'Add', 'Flatten', 'Gemm'], 'logits': logits_of(fixed, x)})

    refusals = [('relu.onnx', nn.ReLU(), 'Relu'), ('sigmoid.onnx', nn.Sigmoid(), 'Sigmoid'), ('tanh.onnx', nn.Tanh(), 'Tanh'),
                ('gelu.onnx', nn.GELU(), 'Erf')]
    for name, act, op in refusals:
        export(tiny(act), name, x, 13)
        fixtures.append({'file': name, 'layout': 'nchw', 'opset': 13, 'refused': op})
    export(nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2 * 14 * 14, 10)), 'maxpool.onnx', x, 13)
    fixtures.append({'file': 'maxpool.onnx', 'layout': 'nchw', 'opset': 13, 'refused': 'MaxPool'})
    export(nn.Sequential(tiny(nn.Identity()), nn.Softmax(dim=1)), 'softmax.onnx', x, 13)
    fixtures.append({'file': 'softmax.onnx', 'layout': 'nchw', 'opset': 13, 'refused': 'Softmax'})
    grouped = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), Quad(), nn.Conv2d(4, 4, 3, padding=1, groups=2), nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=4),
                            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))
    add('grouped.onnx', grouped, 13, ['Conv', 'GlobalAveragePool', 'Flatten', 'Gemm'])
    export(nn.Sequential(nn.Conv2d(1, 2, 3, padding=2, dilation=2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 10)), 'dilated.onnx', x, 13)
    fixtures.append({'file': 'dilated.onnx', 'layout': 'nchw', 'opset': 13, 'refused': 'Conv', 'why': 'dilation 2'})

    class BatchReshape(nn.Module):
        """reshapes across the batch axis: the sample count is no longer the batch, nothing hepoly can resolve"""

        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(392, 10)

        def forward(self, x):
            return self.fc(x.reshape(x.size(0) * 2, -1))[: x.size(0)]
    export(BatchReshape(), 'dynamic.onnx', x, 13)
    fixtures.append({'file': 'dynamic.onnx', 'layout': 'nchw', 'opset': 13, 'refused': 'Reshape', 'why': 'batch-changing reshape'})

    for f in fixtures:
        onnx.checker.check_model(onnx.load(os.path.join(OUT, f['file'])))
    with open(os.path.join(OUT, 'fixtures.json'), 'w') as fh:
        json.dump({'source': 'scripts/make_onnx_fixtures.py; logits of the first 8 images of datasets/fashion-mnist t10k, pixel/255',
                   'fixtures': fixtures}, fh, indent=1)
    for f in fixtures:
        print(f['file'], os.path.getsize(os.path.join(OUT, f['file'])), 'bytes')


if __name__ == '__main__':
    main()
