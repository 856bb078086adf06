import type { LayerSpec } from '../models/graph.js';

/**
 * An op's ONNX face (optional): how `hepoly export --format onnx` writes the layer as standard
 * ai.onnx nodes (src/onnx/export.ts loops over the graph and calls it). An op without it is
 * refused by name before anything is written.
 */

/** Images travel as NCHW (the ONNX convention), vectors as [batch, n]. */
export type OnnxLayout = 'nchw' | 'vec';

/** A tensor of the exported graph: its ONNX value name and layout. */
export interface OnnxValue {
  name: string;
  layout: OnnxLayout;
}

/** Node attributes: integers as INT(S), other numbers as FLOAT, strings as STRING. */
export type OnnxAttributes = Record<string, number | number[] | string>;

/** What the exporter offers one layer: nodes and initializers named after it. */
export interface OnnxBuilder {
  /** appends a node reading `inputs`; returns the name of its one output */
  node(opType: string, inputs: string[], attributes?: OnnxAttributes): string;
  /** a float initializer `<layer>.<suffix>`; returns its name */
  weight(suffix: string, dims: number[], values: ArrayLike<number>): string;
  /** an int64 vector initializer `<layer>.<suffix>` (Pad's pads); returns its name */
  ints(suffix: string, values: number[]): string;
}

export interface OnnxExportContext<L extends LayerSpec> {
  layer: L;
  node: string;
  ins: OnnxValue[];
  /** per-sample NHWC shape of the first input */
  inShape: number[];
  /** the layer's weights after the inference folds (a Dirac conv is its plain kernel here) */
  w(param: string): { shape: number[]; data: Float32Array };
  onnx: OnnxBuilder;
  /** the checkpoint, for messages */
  where: string;
}

export interface OnnxFace<L extends LayerSpec> {
  export(ctx: OnnxExportContext<L>): OnnxValue;
}
