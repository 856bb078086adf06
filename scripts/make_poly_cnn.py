#!/usr/bin/env python3
"""Train a small polynomial CNN on Fashion-MNIST with PyTorch and export it to ONNX: the
"bring your own model" example for `hepoly import` (README, docs/onnx.md).

The activations are written the way PyTorch users write them: `x * x` after the first
convolution, a trainable `a*x*x + b*x + c` (scalar parameters) after the second and after the
hidden linear layer. hepoly import recognises them as its square and quad activations, so the
imported network costs the levels a hepoly-trained one does. Average pooling replaces max-pooling.

Reads the IDX files shipped in datasets/fashion-mnist (no download); inputs are pixel/255,
hepoly's default preprocessing for IDX data.

  apt-get install -y python3-torch   # Debian's PyTorch
  /usr/bin/python3 scripts/make_poly_cnn.py --out test/fixtures/onnx/poly_cnn.onnx
  npx hepoly import test/fixtures/onnx/poly_cnn.onnx --data recipes/fmnist-cnn.yaml --out checkpoints/poly-cnn-onnx
  npx hepoly he-validate checkpoints/poly-cnn-onnx --samples 16

Also writes <out>.expected.json: the logits of the first 8 test images, for the fixture tests.
"""
import argparse, json, os, sys, time
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_onnx_teacher import load  # noqa: E402  (the shared IDX reader)


class Quad(nn.Module):
    """a*x*x + b*x + c with trainable scalars, initialised as hepoly's quad (a=0.1, b=1, c=0)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(0.1))
        self.b = nn.Parameter(torch.tensor(1.0))
        self.c = nn.Parameter(torch.tensor(0.0))

    def forward(self, x):
        return self.a * x * x + self.b * x + self.c


class Square(nn.Module):
    def forward(self, x):
        return x * x


def build():
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), Square(), nn.AvgPool2d(2),
        nn.Conv2d(4, 8, 3, padding=1), nn.BatchNorm2d(8), Quad(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(8 * 7 * 7, 32), Quad(), nn.Linear(32, 10))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--epochs', type=int, default=2)
    p.add_argument('--limit', type=int, default=4000, help='train on the first N images')
    p.add_argument('--out', required=True)
    a = p.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    x, y = load('train')
    x, y = x[:a.limit], y[:a.limit]
    xt, yt = load('test')
    model = build()
    opt = torch.optim.Adam(model.parameters(), 2e-3)
    start = time.time()
    for epoch in range(a.epochs):
        model.train()
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        model.eval()
        with torch.no_grad():
            acc = (model(xt[:2000]).argmax(1) == yt[:2000]).float().mean().item()
        print(json.dumps({'epoch': epoch + 1, 'test_accuracy_2000': round(acc, 4), 'seconds': round(time.time() - start, 1)}), flush=True)
    model.eval()
    torch.onnx.export(model, xt[:1], a.out, input_names=['input'], output_names=['logits'],
                      dynamic_axes={'input': {0: 'batch'}, 'logits': {0: 'batch'}}, opset_version=17)
    with torch.no_grad():
        logits = model(xt[:8])
    with open(a.out + '.expected.json', 'w') as f:
        json.dump({'source': 'first 8 images of datasets/fashion-mnist t10k, pixel/255', 'layout': 'nchw',
                   'logits': [[round(v, 6) for v in row] for row in logits.tolist()]}, f)
    print(f'wrote {a.out} ({os.path.getsize(a.out)} bytes) and {a.out}.expected.json')


if __name__ == '__main__':
    main()
