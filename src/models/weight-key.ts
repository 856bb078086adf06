/** Weights are keyed `${node}/${param}`, e.g. `conv1/kernel`, `act1/coeffs`, `bn1/moving_mean`. */
export function weightKey(node: string, param: string): string {
  return `${node}/${param}`;
}
