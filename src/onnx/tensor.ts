import { DataType, toNumber, type TensorProto } from './proto.js';

/** A constant tensor of an ONNX graph (initializer or Constant), in float64 for exact folding. */
export interface ConstTensor {
  dims: number[];
  data: Float64Array;
}

export const numel = (dims: number[]): number => dims.reduce((a, b) => a * b, 1);

/**
 * The values of a TensorProto, whatever field holds them. Throws a plain Error naming what is
 * unsupported; the importer turns it into a message naming the tensor and the node.
 */
export function decodeTensor(t: TensorProto): ConstTensor {
  const dims = (t.dims ?? []).map(toNumber);
  const n = numel(dims);
  if (t.data_location === 1 || (t.external_data?.length ?? 0) > 0) {
    throw new Error('its data is stored in an external file; save the model with the weights inside (onnx.save(model, path, save_as_external_data=False))');
  }
  const type = t.data_type ?? DataType.FLOAT;
  const raw = t.raw_data && t.raw_data.length ? t.raw_data : null;
  const data = raw ? fromRaw(raw, type) : fromTyped(t, type);
  if (data.length !== n) throw new Error(`it holds ${data.length} values for dims [${dims.join(', ')}] (${n} expected)`);
  return { dims, data };
}

function fromRaw(raw: Uint8Array, type: number): Float64Array {
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const read = (size: number, get: (off: number) => number) => Float64Array.from({ length: raw.byteLength / size }, (_, i) => get(i * size));
  switch (type) {
    case DataType.FLOAT:
      return read(4, (o) => view.getFloat32(o, true));
    case DataType.DOUBLE:
      return read(8, (o) => view.getFloat64(o, true));
    case DataType.INT64:
      return read(8, (o) => Number(view.getBigInt64(o, true)));
    case DataType.INT32:
      return read(4, (o) => view.getInt32(o, true));
    case DataType.INT8:
      return read(1, (o) => view.getInt8(o));
    case DataType.UINT8:
    case DataType.BOOL:
      return read(1, (o) => view.getUint8(o));
    default:
      throw new Error(`its data type ${type} is not supported (float32, float64, int64, int32, int8, uint8, bool are)`);
  }
}

function fromTyped(t: TensorProto, type: number): Float64Array {
  switch (type) {
    case DataType.FLOAT:
      return Float64Array.from(t.float_data ?? []);
    case DataType.DOUBLE:
      return Float64Array.from(t.double_data ?? []);
    case DataType.INT64:
      return Float64Array.from((t.int64_data ?? []).map(toNumber));
    case DataType.INT32:
    case DataType.INT8:
    case DataType.UINT8:
    case DataType.BOOL:
      return Float64Array.from(t.int32_data ?? []);
    default:
      throw new Error(`its data type ${type} is not supported (float32, float64, int64, int32, int8, uint8, bool are)`);
  }
}

/** A float32 initializer (raw little-endian bytes, as exporters write them). */
export function floatTensor(name: string, dims: number[], values: ArrayLike<number>): TensorProto {
  const f = Float32Array.from(values);
  return { name, dims, data_type: DataType.FLOAT, raw_data: new Uint8Array(f.buffer) };
}

export function int64Tensor(name: string, dims: number[], values: number[]): TensorProto {
  const b = new BigInt64Array(values.map((v) => BigInt(v)));
  return { name, dims, data_type: DataType.INT64, raw_data: new Uint8Array(b.buffer) };
}
