/**
 * A small reader/writer for the safetensors format (huggingface/safetensors): an 8-byte
 * little-endian header length N, N bytes of JSON header `{name: {dtype, shape, data_offsets:
 * [begin, end]}, "__metadata__": {str: str}}` padded with spaces so the data starts 8-byte aligned,
 * then the raw little-endian tensor bytes, contiguous and in offset order.
 *
 * The writer emits F32/I32 (what training holds); the reader accepts F32, F16, BF16, F64, I32, I64,
 * I16, I8, U8 and BOOL and converts float types to Float32Array (CLIP weights often ship as F16).
 */
import { endianness } from 'node:os';
import type { AtomicWriter } from '../infra/storage.js';

export type SafetensorsDtype = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

/** A tensor to write. */
export interface NamedArray {
  name: string;
  shape: number[];
  data: Float32Array | Int32Array;
}

/**
 * A float32 tensor to write whose values are read when its turn comes, chunk by chunk (the chunks,
 * in order, hold the shape's element count): a writer then holds one chunk, not the whole file.
 */
export interface TensorSource {
  name: string;
  shape: number[];
  chunks(): AsyncIterable<Float32Array>;
}

/** A tensor already in memory as a source (one chunk). */
export function arraySource(a: NamedArray): TensorSource {
  if (!(a.data instanceof Float32Array)) throw new Error(`tensor ${a.name}: a source holds float32 values`);
  const data = a.data;
  return {
    name: a.name,
    shape: a.shape,
    async *chunks() {
      yield data;
    },
  };
}

/** A tensor read from a file; `bytes` is a view into the file buffer. */
export interface SafetensorsEntry {
  dtype: SafetensorsDtype;
  shape: number[];
  bytes: Uint8Array;
}

export interface SafetensorsFile {
  tensors: Map<string, SafetensorsEntry>;
  metadata: Record<string, string>;
}

const DTYPE_BYTES: Record<SafetensorsDtype, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};
const MAX_HEADER = 100 * 1024 * 1024;

if (endianness() !== 'LE') throw new Error('training/safetensors.ts assumes a little-endian host');

/** The header bytes (length prefix + padded JSON) for tensors written in the given order. */
export function safetensorsHeader(arrays: readonly NamedArray[], metadata: Record<string, string> = {}): Uint8Array {
  return headerBytes(
    arrays.map((a) => {
      const count = a.shape.reduce((p, d) => p * d, 1);
      if (count !== a.data.length)
        throw new Error(`tensor ${a.name}: shape [${a.shape}] has ${count} elements but data has ${a.data.length}`);
      const dtype = a.data instanceof Float32Array ? ('F32' as const) : ('I32' as const);
      return { name: a.name, shape: a.shape, dtype, bytes: a.data.byteLength };
    }),
    metadata,
  );
}

function headerBytes(
  entries: readonly { name: string; shape: number[]; dtype: 'F32' | 'I32'; bytes: number }[],
  metadata: Record<string, string>,
): Uint8Array {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  const seen = new Set<string>();
  for (const a of entries) {
    if (seen.has(a.name) || a.name === '__metadata__')
      throw new Error(`duplicate or reserved tensor name ${JSON.stringify(a.name)}`);
    seen.add(a.name);
    const end = offset + a.bytes;
    header[a.name] = { dtype: a.dtype, shape: a.shape, data_offsets: [offset, end] };
    offset = end;
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  const pad = (8 - (json.length % 8)) % 8;
  if (pad > 0) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const out = Buffer.alloc(8 + json.length);
  out.writeBigUInt64LE(BigInt(json.length), 0);
  json.copy(out, 8);
  return out;
}

/** Encode tensors (in the given order) as one safetensors buffer. */
export function encodeSafetensors(arrays: readonly NamedArray[], metadata: Record<string, string> = {}): Buffer {
  const parts: Uint8Array[] = [safetensorsHeader(arrays, metadata)];
  for (const a of arrays) parts.push(new Uint8Array(a.data.buffer, a.data.byteOffset, a.data.byteLength));
  return Buffer.concat(parts);
}

/**
 * Stream float32 tensors into an atomic writer, reading each source's chunks as it goes (no
 * whole-file buffer, no whole-tensor copy); the caller commits. Same bytes as `encodeSafetensors`
 * of the same values.
 */
export async function writeSafetensors(
  writer: AtomicWriter,
  sources: readonly TensorSource[],
  metadata: Record<string, string> = {},
): Promise<void> {
  const count = (shape: number[]) => shape.reduce((p, d) => p * d, 1);
  const entries = sources.map((s) => ({
    name: s.name,
    shape: s.shape,
    dtype: 'F32' as const,
    bytes: 4 * count(s.shape),
  }));
  await writer.write(headerBytes(entries, metadata));
  for (const s of sources) {
    const want = count(s.shape);
    let got = 0;
    for await (const chunk of s.chunks()) {
      got += chunk.length;
      if (got > want) break;
      await writer.write(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    }
    if (got !== want)
      throw new Error(`tensor ${s.name}: its source gave ${got} values for shape [${s.shape}] (${want})`);
  }
}

/** Parse a safetensors buffer; validates offsets (contiguous, in bounds) and dtypes. */
export function decodeSafetensors(buf: Uint8Array): SafetensorsFile {
  const view = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (view.length < 8) throw new Error(`safetensors file too short (${view.length} bytes)`);
  const n = view.readBigUInt64LE(0);
  if (n > BigInt(Math.min(MAX_HEADER, view.length - 8)))
    throw new Error(`safetensors header length ${n} exceeds the file`);
  const headerLen = Number(n);
  const header = JSON.parse(view.subarray(8, 8 + headerLen).toString('utf8')) as Record<string, unknown>;
  const dataStart = 8 + headerLen;
  const dataLen = view.length - dataStart;
  const metadata = (header.__metadata__ ?? {}) as Record<string, string>;
  const tensors = new Map<string, SafetensorsEntry>();
  const spans: [number, number, string][] = [];
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const info = raw as { dtype: SafetensorsDtype; shape: number[]; data_offsets: [number, number] };
    const width = DTYPE_BYTES[info.dtype];
    if (width === undefined) throw new Error(`tensor ${name}: unsupported dtype ${String(info.dtype)}`);
    const [begin, end] = info.data_offsets;
    const count = info.shape.reduce((p, d) => p * d, 1);
    if (!(begin >= 0 && end >= begin && end <= dataLen))
      throw new Error(`tensor ${name}: offsets [${begin}, ${end}] outside data of ${dataLen} bytes`);
    if (end - begin !== count * width)
      throw new Error(`tensor ${name}: ${end - begin} bytes for shape [${info.shape}] of ${info.dtype}`);
    tensors.set(name, {
      dtype: info.dtype,
      shape: info.shape,
      bytes: view.subarray(dataStart + begin, dataStart + end),
    });
    spans.push([begin, end, name]);
  }
  spans.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let cursor = 0;
  for (const [begin, end, name] of spans) {
    if (begin !== cursor)
      throw new Error(`tensor ${name}: data is not contiguous (starts at ${begin}, expected ${cursor})`);
    cursor = end;
  }
  if (cursor !== dataLen) throw new Error(`safetensors data has ${dataLen - cursor} trailing bytes`);
  return { tensors, metadata };
}

/** Convert a floating-point (or integer) entry to Float32Array. */
export function entryToFloat32(entry: SafetensorsEntry): Float32Array {
  const { bytes, dtype } = entry;
  // Copy: a view into the file may not be aligned for typed arrays wider than a byte.
  const aligned = (_width: number): ArrayBuffer => {
    const copy = new Uint8Array(bytes.byteLength);
    copy.set(bytes);
    return copy.buffer;
  };
  switch (dtype) {
    case 'F32':
      return new Float32Array(aligned(4));
    case 'F64':
      return Float32Array.from(new Float64Array(aligned(8)));
    case 'F16':
      return Float32Array.from(new Uint16Array(aligned(2)), halfToFloat);
    case 'BF16': {
      const src = new Uint16Array(aligned(2));
      const out = new Uint32Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = src[i]! << 16;
      return new Float32Array(out.buffer);
    }
    case 'I32':
      return Float32Array.from(new Int32Array(aligned(4)));
    case 'I64':
      return Float32Array.from(new BigInt64Array(aligned(8)), (v) => Number(v));
    case 'I16':
      return Float32Array.from(new Int16Array(aligned(2)));
    case 'I8':
      return Float32Array.from(new Int8Array(aligned(1)));
    case 'U8':
    case 'BOOL':
      return Float32Array.from(bytes);
  }
}

function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}
