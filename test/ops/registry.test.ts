import { expect } from 'chai';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { SHIPPED_OPS } from '../../src/ops/index.js';
import { allOps, getOp, registerOp } from '../../src/ops/registry.js';
import type { OpDef } from '../../src/ops/types.js';
import { opsDocument } from '../../src/ops/table.js';
import { HepolyError } from '../../src/util/errors.js';
import { hepoly } from '../helpers/cli.js';
import { expectAllClose } from '../helpers/close.js';

/**
 * The op registry: every shipped op carries every face, registration refuses one that does
 * not, each op's tfjs forward agrees with its float64 reference on its examples, no module
 * outside src/ops switches on op names, and docs/ops.md is what the registry generates.
 */

const root = join(import.meta.dirname, '..', '..');

function rand(n: number, seed: number, lo = -1, hi = 1): Float64Array {
  let s = seed;
  return Float64Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return lo + (s / 2147483648) * (hi - lo);
  });
}

describe('ops/registry', function () {
  this.timeout(120000);
  before(async () => {
    await tf.setBackend('cpu');
  });

  it('registers every shipped op once, by name', () => {
    expect(allOps().map((d) => d.name)).to.deep.equal(SHIPPED_OPS.map((d) => d.name));
    expect(new Set(allOps().map((d) => d.name)).size).to.equal(allOps().length);
    expect(getOp('conv2d').family).to.equal('conv2d');
    expect(() => getOp('conv3d')).to.throw(HepolyError, /unknown layer op "conv3d": this hepoly knows dense, conv2d/);
  });

  for (const face of ['lowerHE', 'levelCost', 'tfjsForward', 'attributes', 'foldsInto'] as const) {
    it(`refuses an op without its ${face} face, naming the op and the face`, () => {
      const def = { ...getOp('dense'), name: `dense-without-${face}` } as unknown as Partial<OpDef>;
      delete def[face];
      expect(() => registerOp(def as OpDef)).to.throw(HepolyError, new RegExp(`registerOp: op dense-without-${face} has no ${face} face`));
      expect(() => getOp(`dense-without-${face}`)).to.throw(/unknown layer op/);
    });
  }

  it('refuses a second op of the same name', () => {
    expect(() => registerOp(getOp('dense'))).to.throw(HepolyError, /op dense is registered twice/);
  });

  for (const def of SHIPPED_OPS) {
    for (const { layer, ins } of def.examples) {
      it(`${def.name} ${def.describe(layer)}: tfjs forward = float64 reference; attributes parse`, () => {
        const { op, ...attrs } = layer as { op: string };
        expect(op).to.equal(def.name);
        expect(def.attributes.safeParse(attrs).success, JSON.stringify(attrs)).to.equal(true);
        const params = Object.entries(def.params(layer, ins[0]));
        const w = new Map(params.map(([k, p], i) => [k, rand(p.shape.reduce((a, b) => a * b, 1), 17 + i, k.includes('variance') ? 0.5 : -1, k.includes('variance') ? 2 : 1)]));
        // character ids for an embedding, values elsewhere
        const xs = ins.map((s, i) => (def.name === 'embedding' ? Float64Array.from({ length: s[0] }, (_, t) => t % 5) : rand(s.reduce((a, b) => a * b, 1), 3 + i)));
        const want = def.referenceForward({ layer, node: 'n', ins: xs, inShapes: ins, w: (p) => w.get(p)! });
        expect(want.length).to.equal(def.outputShape(layer, ins, 'n').reduce((a, b) => a * b, 1));
        const got = tf.tidy(() =>
          def
            .tfjsForward({
              layer,
              node: 'n',
              ins: xs.map((x, i) => tf.tensor(Float32Array.from(x), [1, ...ins[i]])),
              w: (p) => tf.tensor(Float32Array.from(w.get(p)!), params.find(([k]) => k === p)![1].shape),
              training: false,
              probe: () => {},
              batchStats: () => {},
            })
            .dataSync(),
        );
        expectAllClose(got, want, { atol: 1e-4, rtol: 1e-3 }, `${def.name} tfjs vs float64`);
      });
    }
  }

  it('the graph utilities, summary, interpreters, HE compiler and pruning do not switch on op names', () => {
    // a switch over a layer's op, or a comparison of it with a name (the program IR's own
    // step kinds, `op.kind`, share some names and are not op dispatch)
    const pattern = /switch \((\w+\.)*(L|layer)\.op\)|\b(L|layer)\.op [!=]== '/;
    // the modules issue 17 part 1 moved onto the registry (the transformer evaluator is part 2's)
    const modules = [
      'src/models/graph.ts',
      'src/models/summary.ts',
      'src/models/tf-interpreter.ts',
      'src/models/fold.ts',
      'src/models/sequence-ops.ts',
      'src/models/cnn.ts',
      'src/he/compile.ts',
      'src/he/linear-map.ts',
      'src/he/reference.ts',
      'src/he/tensor-ops.ts',
      'src/he/program.ts',
      ...readdirSync(join(root, 'src/train')).filter((f) => f.startsWith('prune')).map((f) => `src/train/${f}`),
    ];
    const offenders = modules.flatMap((rel) =>
      readFileSync(join(root, rel), 'utf8')
        .split('\n')
        .flatMap((line, i) => (pattern.test(line) ? [`${rel}:${i + 1}: ${line.trim()}`] : [])),
    );
    expect(modules.length).to.be.greaterThan(12);
    expect(offenders).to.deep.equal([]);
  });

  it('docs/ops.md is what scripts/gen-ops-table.ts writes from the registry', () => {
    const doc = readFileSync(join(root, 'docs', 'ops.md'), 'utf8');
    expect(doc, 'docs/ops.md is out of date: run npx tsx scripts/gen-ops-table.ts').to.equal(opsDocument());
    expect(doc).to.match(/\| `conv2d 4x3x3 s1 same g4` \| src\/ops\/conv2d\.ts \| program IR \| 1 \| yes \| yes \| yes \| yes \|/);
  });

  it('hepoly ops lists every op and its packings (the built CLI)', () => {
    const r = hepoly(['ops', '--json']);
    expect(r.code, r.stderr).to.equal(0);
    const rows = JSON.parse(r.stdout.trim().split('\n').pop()!) as { op: string; packings: Record<string, unknown> }[];
    expect(new Set(rows.map((x) => x.op))).to.deep.equal(new Set(allOps().map((d) => d.name)));
    expect(rows.find((x) => x.op === 'maxpool')!.packings.batch).to.match(/not a polynomial/);
  });
});
