import { expect } from 'chai';
import { atCurrentSpeed, type Calibration } from '../../src/he/tiles/calibrate.js';
import { OP_KINDS, type OpKind } from '../../src/he/tiles/dry-run.js';

describe('he/tiles/calibrate: a cached calibration follows the load of now', () => {
  const ops = Object.fromEntries(OP_KINDS.map((k, i) => [k, { base: 0.1 * i, perPrime: 0.5 + i }])) as Calibration['ops'];
  const cached: Calibration = { key: 'k', measuredAt: '2026-11-28T09:00:00Z', ops, probeMs: 100 };

  it('scales every operation by the ratio of the speed probes', () => {
    const slower = atCurrentSpeed(cached, 250);
    for (const k of OP_KINDS as readonly OpKind[]) {
      expect(slower.ops[k].base).to.be.closeTo(ops[k].base * 2.5, 1e-12);
      expect(slower.ops[k].perPrime).to.be.closeTo(ops[k].perPrime * 2.5, 1e-12);
    }
    expect(slower.probeMs).to.equal(250);
    expect(atCurrentSpeed(cached, 50).ops.rotate.perPrime).to.be.closeTo(ops.rotate.perPrime / 2, 1e-12);
  });

  it('leaves a cache entry without a probe time as it was', () => {
    const old = { ...cached, probeMs: undefined };
    expect(atCurrentSpeed(old, 250).ops).to.deep.equal(ops);
  });
});
