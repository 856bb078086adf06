/** A byte count as people read memory sizes: GiB from 1 GiB up, else MiB. */
export function fmtGiB(b: number): string {
  return b >= 2 ** 30 ? `${(b / 2 ** 30).toFixed(2)} GiB` : `${(b / 2 ** 20).toFixed(1)} MiB`;
}
