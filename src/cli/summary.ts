import { defineCommand } from './command.js';

export interface SummaryArgs {
  checkpoint: string;
  json?: boolean;
}

const num = (x: number) => (Math.abs(x) >= 100 ? x.toFixed(0) : x.toPrecision(3));

/** Keras-style model table, plus what matters under HE: activation ranges and level costs. */
export async function runSummary(a: SummaryArgs): Promise<void> {
  const [{ default: Table }, { loadCheckpoint }, { summarize }, { shortPath }] = await Promise.all([
    import('cli-table3'),
    import('../train/checkpoint.js'),
    import('../models/summary.js'),
    import('../util/paths.js'),
  ]);
  const ckpt = loadCheckpoint(a.checkpoint);
  const s = summarize(ckpt.graph, ckpt.ranges);
  const table = new Table({
    head: ['Layer (type)', 'Output shape', 'Params', 'Input range [min, max] (p0.1..p99.9)', 'HE depth'],
    style: { head: [], border: [] },
  });
  for (const l of s.layers) {
    table.push([
      `${l.name} (${l.op}${l.detail ? ` ${l.detail}` : ''})`,
      `(${['N', ...l.output_shape].join(', ')})`,
      l.params.toLocaleString('en-US'),
      l.input_range ? `[${num(l.input_range.min)}, ${num(l.input_range.max)}] (${num(l.input_range.p001)}..${num(l.input_range.p999)})` : '',
      l.he_depth === null ? 'not HE' : String(l.he_depth),
    ]);
  }
  console.log(`${shortPath(ckpt.dir)}: ${ckpt.recipe.name}, input (${['N', ...ckpt.graph.inputShape].join(', ')}), ${ckpt.graph.classes} classes`);
  console.log(table.toString());
  console.log(`Total params: ${s.total_params.toLocaleString('en-US')}`);
  if (s.he_ready) console.log(`Multiplicative depth under CKKS: ${s.he_depth} levels (before encoding margins)`);
  else console.log(`Not runnable under HE: ${s.non_polynomial.join(', ')} ${s.non_polynomial.length > 1 ? 'are' : 'is'} not polynomial. Retrain with activation: {kind: quad} and avgpool, or distill into a polynomial student`);
  if (!ckpt.ranges) console.log('(no ranges.json: training did not finish; resume it with hepoly train RECIPE --resume)');
  if (a.json) console.log(JSON.stringify({ checkpoint: ckpt.dir, ...s }));
}

export const summaryCommand = defineCommand(
  'summary <checkpoint>',
  'layers, shapes, parameters, activation ranges and HE depth',
  (y) => y.positional('checkpoint', { type: 'string', demandOption: true }).option('json', { type: 'boolean', default: false }),
  (a) => runSummary({ checkpoint: a.checkpoint, json: a.json }),
);
