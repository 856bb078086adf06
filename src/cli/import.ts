import { HepolyError } from '../util/errors.js';
import { defineCommand } from './command.js';

export interface ImportArgs {
  model: string;
  data: string;
  layout?: string;
  out?: string;
  overwrite?: boolean;
  backend?: string;
  json?: boolean;
}

/** `hepoly import MODEL.onnx --data RECIPE.yaml`: an ONNX network becomes a hepoly checkpoint. */
export async function runImport(a: ImportArgs): Promise<void> {
  if (a.layout !== undefined && a.layout !== 'nchw' && a.layout !== 'nhwc') {
    throw new HepolyError(`--layout: expected nchw (PyTorch exports) or nhwc (Keras / tf2onnx exports), found "${a.layout}"`, { exitCode: 2 });
  }
  const [{ shortPath }, { initBackend }, { importCheckpoint }] = await Promise.all([import('../util/paths.js'), import('../train/backend.js'), import('../onnx/import.js')]);
  const backend = await initBackend(a.backend);
  console.log(`backend: ${backend}`);
  const r = await importCheckpoint({ model: a.model, data: a.data, layout: a.layout as 'nchw' | 'nhwc' | undefined, out: a.out, overwrite: a.overwrite, backend, log: (l) => console.log(l) });
  console.log(`wrote ${shortPath(r.checkpoint)}${r.model_section === 'stand-in' ? ' (its recipe model: section is a stand-in; the network is the graph in model.json)' : ''}`);
  console.log(`next: hepoly summary ${shortPath(r.checkpoint)}, hepoly he-validate ${shortPath(r.checkpoint)}`);
  if (a.json) {
    console.log(
      JSON.stringify({
        checkpoint: r.checkpoint,
        layers: r.layers,
        activations: r.activations.map((x) => ({ name: x.name, kind: x.kind, coeffs: x.coeffs, onnx_nodes: x.onnx_nodes })),
        accuracy: r.accuracy,
        onnx_accuracy: r.onnx_accuracy,
        max_abs_diff: r.max_abs_diff,
        max_abs_logit: r.max_abs_logit,
        split: r.split,
        samples: r.samples,
        layout: r.layout,
      }),
    );
  }
}

export const importCommand = defineCommand(
  'import <model>',
  'read an ONNX polynomial network (PyTorch / Keras export) into a hepoly checkpoint, checked against onnxruntime',
  (y) =>
    y
      .positional('model', { type: 'string', demandOption: true, describe: 'the .onnx file' })
      .option('data', { type: 'string', demandOption: true, describe: 'a recipe whose data: section (and optional name:) describes the data the model was trained on' })
      .option('layout', { type: 'string', choices: ['nchw', 'nhwc'], describe: 'input layout when the ONNX input shape does not tell (PyTorch: nchw, Keras: nhwc)' })
      .option('out', { type: 'string', describe: 'checkpoint directory (default checkpoints/<model file name>)' })
      .option('overwrite', { type: 'boolean', default: false, describe: 'replace an existing checkpoint at --out' })
      .option('backend', { type: 'string' })
      .option('json', { type: 'boolean', default: false }),
  (a) => runImport({ model: a.model, data: a.data, layout: a.layout, out: a.out, overwrite: a.overwrite, backend: a.backend, json: a.json }),
);
