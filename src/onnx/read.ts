import { existsSync, readFileSync, statSync } from 'node:fs';
import { HepolyError } from '../util/errors.js';
import { shortPath } from '../util/paths.js';
import { decodeModel, toNumber, type AttributeProto, type ModelProto, type NodeProto } from './proto.js';
import { decodeTensor, type ConstTensor } from './tensor.js';

/** Reads an .onnx file; an unreadable or non-ONNX file is one message naming it and the fix. */
export function readOnnxModel(path: string): ModelProto {
  const unreadable = (why: string) =>
    new HepolyError(`${shortPath(path)}: cannot read it as an ONNX model: ${why}. Export it again (torch.onnx.export or tf2onnx) or check the path`);
  if (!existsSync(path)) throw new HepolyError(`${shortPath(path)}: file not found. Give the path of an .onnx file`);
  if (statSync(path).isDirectory()) throw unreadable('it is a directory');
  let model: ModelProto;
  try {
    model = decodeModel(readFileSync(path));
  } catch (e) {
    throw unreadable(`it is not a serialized ModelProto (${(e as Error).message})`);
  }
  if (!model.graph || !(model.graph.node?.length ?? 0)) throw unreadable('it holds no graph nodes');
  if (!(model.graph.input?.length ?? 0) || !(model.graph.output?.length ?? 0)) throw unreadable('its graph declares no input or no output');
  return model;
}

/** The ai.onnx opset the model was written for (the default domain's version). */
export function defaultOpset(model: ModelProto): number {
  const entry = (model.opset_import ?? []).find((o) => !o.domain || o.domain === 'ai.onnx');
  return entry ? toNumber(entry.version) : 0;
}

/** "node 'name' (OpType)": how every message names an ONNX node. */
export function describeNode(node: NodeProto): string {
  return `node '${node.name || node.output?.[0] || '?'}' (${node.op_type})`;
}

/** Typed access to one node's attributes. */
export class Attributes {
  private readonly byName: Map<string, AttributeProto>;
  constructor(node: NodeProto) {
    this.byName = new Map((node.attribute ?? []).map((a) => [a.name ?? '', a]));
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  int(name: string, fallback: number): number {
    const a = this.byName.get(name);
    return a ? toNumber(a.i) : fallback;
  }

  float(name: string, fallback: number): number {
    const a = this.byName.get(name);
    return a?.f ?? fallback;
  }

  ints(name: string, fallback: number[]): number[] {
    const a = this.byName.get(name);
    return a ? (a.ints ?? []).map(toNumber) : fallback;
  }

  floats(name: string): number[] | undefined {
    return this.byName.get(name)?.floats;
  }

  string(name: string, fallback: string): string {
    const a = this.byName.get(name);
    return a?.s ? Buffer.from(a.s).toString('utf8') : fallback;
  }

  tensor(name: string): ConstTensor | undefined {
    const t = this.byName.get(name)?.t;
    return t ? decodeTensor(t) : undefined;
  }
}
