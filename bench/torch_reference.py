#!/usr/bin/env python3
"""PyTorch's training speed on the bench models of bench/train-speed.ts.

bench:train builds the same three networks in hepoly and divides hepoly's samples/s by the
figure this script prints. Only speed is measured: the inputs and labels are random and fixed.

Output: one JSON line {"model", "batch", "samples_per_s", "threads", "torch"}.

Needs PyTorch for the system Python (Debian: apt-get install -y python3-torch; run it as
/usr/bin/python3 bench/torch_reference.py --model cnn).

The models, written channels-first (PyTorch's NCHW; hepoly's tfjs side is NHWC). "quad" is a
trainable quadratic a*x^2 + b*x + c with one scalar a, b and c per activation, initialised
a = 0.1, b = 1, c = 0 as hepoly's quad activation is:

  mlp     784 -> dense 256 -> quad -> dense 256 -> quad -> dense 10
  cnn     1x28x28 -> conv 3x3, 32, same -> quad -> avgpool 2 -> conv 3x3, 64, same -> quad
          -> avgpool 2 -> flatten -> dense 10
  resnet  3x32x32 -> conv 3x3, 16, no bias -> batchnorm -> quad -> three stages of two basic
          blocks (16, 32, 64 channels; the first block of stages 2 and 3 has stride 2 and a
          1x1 conv + batchnorm shortcut) -> global average pool -> dense 10.
          A basic block is conv 3x3 -> batchnorm -> quad -> conv 3x3 -> batchnorm, plus the
          shortcut, then quad (no batchnorm after the add: hepoly's post_add_bn is off here).

Training: softmax cross-entropy, Adam at lr 1e-3, 3 untimed warm-up steps, then --steps timed.
"""
import argparse
import json
import time

import torch
from torch import nn


class Quadratic(nn.Module):
    """a*x^2 + b*x + c with trainable scalars: the polynomial that replaces ReLU."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(0.1))
        self.b = nn.Parameter(torch.tensor(1.0))
        self.c = nn.Parameter(torch.tensor(0.0))

    def forward(self, x):
        return self.a * x * x + self.b * x + self.c


def conv_bn(cin, cout, kernel, stride):
    """A bias-free convolution followed by batchnorm (the bias would be cancelled by it)."""
    return [nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False), nn.BatchNorm2d(cout)]


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.main = nn.Sequential(*conv_bn(cin, cout, 3, stride), Quadratic(), *conv_bn(cout, cout, 3, 1))
        # the identity only fits when neither the size nor the width changes
        needs_projection = stride != 1 or cin != cout
        self.shortcut = nn.Sequential(*conv_bn(cin, cout, 1, stride)) if needs_projection else nn.Identity()
        self.after_add = Quadratic()

    def forward(self, x):
        return self.after_add(self.main(x) + self.shortcut(x))


def mlp():
    layers = [nn.Linear(784, 256), Quadratic(), nn.Linear(256, 256), Quadratic(), nn.Linear(256, 10)]
    return nn.Sequential(*layers), (784,)


def cnn():
    layers = [
        nn.Conv2d(1, 32, 3, padding=1), Quadratic(), nn.AvgPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), Quadratic(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 10),
    ]
    return nn.Sequential(*layers), (1, 28, 28)


def resnet():
    layers = [*conv_bn(3, 16, 3, 1), Quadratic()]
    width = 16
    for stage_width, first_stride in ((16, 1), (32, 2), (64, 2)):
        layers.append(BasicBlock(width, stage_width, first_stride))
        layers.append(BasicBlock(stage_width, stage_width, 1))
        width = stage_width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10)]
    return nn.Sequential(*layers), (3, 32, 32)


MODELS = {'mlp': mlp, 'cnn': cnn, 'resnet': resnet}
WARMUP_STEPS = 3


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', choices=sorted(MODELS), default='mlp')
    parser.add_argument('--batch', type=int, default=128)
    parser.add_argument('--steps', type=int, default=20, help='timed training steps')
    parser.add_argument('--threads', type=int, default=0,
                        help='intra-op threads for torch.set_num_threads (0: keep PyTorch\'s default)')
    args = parser.parse_args()
    if args.batch < 1 or args.steps < 1 or args.threads < 0:
        parser.error('--batch and --steps must be at least 1, --threads at least 0')
    return args


def samples_per_second(model, input_shape, batch, steps):
    torch.manual_seed(0)
    inputs = torch.randn(batch, *input_shape)
    labels = torch.randint(0, 10, (batch,))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_of = nn.CrossEntropyLoss()

    def train_step():
        optimizer.zero_grad()
        loss_of(model(inputs), labels).backward()
        optimizer.step()

    for _ in range(WARMUP_STEPS):  # first steps allocate buffers and pick kernels
        train_step()
    start = time.perf_counter()
    for _ in range(steps):
        train_step()
    return batch * steps / (time.perf_counter() - start)


def main():
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, input_shape = MODELS[args.model]()
    speed = samples_per_second(model, input_shape, args.batch, args.steps)
    print(json.dumps({'model': args.model, 'batch': args.batch, 'samples_per_s': round(speed, 1),
                      'threads': torch.get_num_threads(), 'torch': torch.__version__}))


if __name__ == '__main__':
    main()
