#!/usr/bin/env python3
"""Train a small ReLU CNN on Fashion-MNIST with PyTorch and export it to ONNX: a teacher
for `distill: {teacher: model.onnx}` made the way users make theirs (PyTorch -> ONNX, NCHW).

Reads the IDX files shipped in datasets/fashion-mnist (no download). Inputs are pixel/255,
exactly hepoly's default preprocessing for IDX data, so the teacher sees the student's input.

  apt-get install -y python3-torch   # Debian's PyTorch
  /usr/bin/python3 scripts/make_onnx_teacher.py --size small --out test/fixtures/fmnist-teacher.onnx
  /usr/bin/python3 scripts/make_onnx_teacher.py --size large --epochs 8 --out checkpoints/fmnist-teacher-large.onnx

Also writes <out>.expected.json: the logits of the first 4 test images, for the fixture test.
"""
import argparse, gzip, json, os, struct
import torch
import torch.nn as nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read_idx(path):
    with open(path, 'rb') as f:
        data = f.read()
    if data[:2] == b'\x1f\x8b':
        data = gzip.decompress(data)
    magic, = struct.unpack('>I', data[:4])
    dims = data[3]
    shape = struct.unpack('>' + 'I' * dims, data[4:4 + 4 * dims])
    return torch.frombuffer(bytearray(data[4 + 4 * dims:]), dtype=torch.uint8).reshape(shape)


def load(split):
    d = os.path.join(ROOT, 'datasets', 'fashion-mnist')
    prefix = 'train' if split == 'train' else 't10k'
    x = read_idx(os.path.join(d, f'{prefix}-images-idx3-ubyte.gz')).float().div(255).unsqueeze(1)
    y = read_idx(os.path.join(d, f'{prefix}-labels-idx1-ubyte.gz')).long()
    return x, y


def build(size):
    if size == 'small':
        return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(16 * 7 * 7, 10))
    return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                         nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
                         nn.Conv2d(64, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Dropout(0.3), nn.Linear(64 * 7 * 7, 256), nn.ReLU(), nn.Dropout(0.3),
                         nn.Linear(256, 10))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--size', choices=['small', 'large'], default='small')
    p.add_argument('--epochs', type=int, default=1)
    p.add_argument('--limit', type=int, default=0, help='train on the first N images only (0: all)')
    p.add_argument('--out', required=True)
    a = p.parse_args()
    torch.manual_seed(0)
    x, y = load('train')
    if a.limit:
        x, y = x[:a.limit], y[:a.limit]
    xt, yt = load('test')
    model = build(a.size)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, a.epochs * ((len(x) + 127) // 128))
    for epoch in range(a.epochs):
        model.train()
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 128):
            idx = perm[i:i + 128]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
            sched.step()
        model.eval()
        with torch.no_grad():
            acc = sum((model(xt[i:i + 1000]).argmax(1) == yt[i:i + 1000]).sum().item() for i in range(0, len(xt), 1000)) / len(xt)
        print(json.dumps({'epoch': epoch + 1, 'test_accuracy': acc}), flush=True)
    model.eval()
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    torch.onnx.export(model, torch.zeros(1, 1, 28, 28), a.out, input_names=['image'], output_names=['logits'],
                      dynamic_axes={'image': {0: 'batch'}, 'logits': {0: 'batch'}}, opset_version=13)
    with torch.no_grad():
        expected = model(xt[:4]).tolist()
    with open(a.out + '.expected.json', 'w') as f:
        json.dump({'inputs': 'first 4 Fashion-MNIST test images, pixel/255, NCHW', 'labels': yt[:4].tolist(),
                   'logits': expected, 'test_accuracy': acc}, f, indent=1)
    print(json.dumps({'out': a.out, 'test_accuracy': acc}))


if __name__ == '__main__':
    main()
