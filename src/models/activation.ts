import type { ActivationConfig } from '../recipe/schema.js';
import type { ActivationSpec } from './graph.js';

export function toActivationSpec(a: ActivationConfig): ActivationSpec {
  switch (a.kind) {
    case 'relu-approx':
      return { kind: 'relu-approx', degree: a.degree, range: [a.range[0], a.range[1]], trainable: a.trainable };
    default:
      return { ...a };
  }
}
