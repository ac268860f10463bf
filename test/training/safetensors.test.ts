import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { PROJECT_ROOT } from '../../infra/config.js';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { selectTfBackend } from '../../infra/tfjs-backend.js';
import {
  arraySource,
  decodeSafetensors,
  encodeSafetensors,
  entryToFloat32,
  writeSafetensors,
} from '../../training/safetensors.js';
import { CHUNK_ELEMENTS, deviceSource } from '../../training/tensor-source.js';
import { tempStorage } from './shard-fixtures.js';

const FIXTURES = join(PROJECT_ROOT, 'fixtures', 'training');
interface Ref {
  safetensors: {
    mixed: Record<string, { shape: number[]; values: number[] }>;
    f32: Record<string, { shape: number[]; values: number[] }>;
  };
}
const ref = JSON.parse(await readFile(join(FIXTURES, 'reference.json'), 'utf8')) as Ref;

void test('round-trips F32 and I32 tensors with metadata', () => {
  const buf = encodeSafetensors(
    [
      { name: 'w', shape: [2, 3], data: Float32Array.from([1, -2, 3.5, 0, 1e-30, -7]) },
      { name: 'ids', shape: [3], data: Int32Array.from([-1, 0, 2147483647]) },
    ],
    { step: '12' },
  );
  const file = decodeSafetensors(buf);
  assert.deepEqual(file.metadata, { step: '12' });
  assert.deepEqual([...entryToFloat32(file.tensors.get('w')!)], [1, -2, 3.5, 0, Math.fround(1e-30), -7]);
  assert.equal(file.tensors.get('ids')!.dtype, 'I32');
  assert.deepEqual([...new Int32Array(Uint8Array.from(file.tensors.get('ids')!.bytes).buffer)], [-1, 0, 2147483647]);
});

void test('header layout by hand: u64 LE length, JSON padded with spaces to 8 bytes, contiguous offsets', () => {
  const buf = encodeSafetensors([{ name: 'a', shape: [3], data: Float32Array.from([1, 2, 3]) }], { format: 'pt' });
  const n = Number(buf.readBigUInt64LE(0));
  assert.equal((8 + n) % 8, 0);
  const header = buf.subarray(8, 8 + n).toString('utf8');
  assert.match(header, /^\{.*\} *$/);
  assert.deepEqual(JSON.parse(header), {
    __metadata__: { format: 'pt' },
    a: { dtype: 'F32', shape: [3], data_offsets: [0, 12] },
  });
  assert.equal(buf.length, 8 + n + 12);
  assert.equal(buf.readFloatLE(8 + n + 8), 3);
});

void test('reads a file written by Python safetensors (F32, F16, BF16, I64)', async () => {
  const file = decodeSafetensors(await readFile(join(FIXTURES, 'python-mixed.safetensors')));
  assert.deepEqual(file.metadata, { format: 'pt', note: 'kiln' });
  for (const [name, want] of Object.entries(ref.safetensors.mixed)) {
    const entry = file.tensors.get(name)!;
    assert.deepEqual(entry.shape, want.shape, name);
    assert.deepEqual(
      [...entryToFloat32(entry)],
      want.values.map((v) => Math.fround(v)),
      name,
    );
  }
});

void test('our writer produces byte-identical output to Python safetensors for F32 tensors', async () => {
  const python = await readFile(join(FIXTURES, 'python-f32.safetensors'));
  const ours = encodeSafetensors(
    Object.entries(ref.safetensors.f32)
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([name, t]) => ({ name, shape: t.shape, data: Float32Array.from(t.values) })),
    { format: 'pt' },
  );
  assert.equal(ours.toString('hex'), python.toString('hex'));
});

void test('rejects truncated and overlapping files', () => {
  const good = encodeSafetensors([{ name: 'a', shape: [2], data: Float32Array.from([1, 2]) }]);
  assert.throws(() => decodeSafetensors(good.subarray(0, good.length - 4)), /outside data|bytes for shape/);
  const n = Number(good.readBigUInt64LE(0));
  const bad = Buffer.from(good);
  bad.write(JSON.stringify({ a: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }).padEnd(n, ' '), 8);
  assert.throws(() => decodeSafetensors(bad), /not contiguous|outside data/);
});

void test('streamed from device tensors in chunks (checkpoint writes), the file is byte for byte what encodeSafetensors writes from host arrays', async () => {
  await selectTfBackend();
  const { storage, cleanup } = await tempStorage();
  try {
    // One tensor past two chunks, and per-parameter slices of a flat vector (how the optimizer and EMA hold them).
    const big = tf.randomNormal([CHUNK_ELEMENTS * 2 + 17], 0, 1, 'float32', 3);
    const flat = tf.randomNormal([10 + 12], 0, 1, 'float32', 4);
    const [bigHost, flatHost] = [(await big.data()) as Float32Array, (await flat.data()) as Float32Array];
    const sources = [
      deviceSource('a.big', [CHUNK_ELEMENTS * 2 + 17], big),
      deviceSource('b.w', [2, 5], flat, 0),
      deviceSource('c.v', [12], flat, 10),
    ];
    const uri = storage.uri('streamed.safetensors');
    const writer = await storage.openAtomicWriter(uri);
    await writeSafetensors(writer, sources, { format: 'pt' });
    await writer.commit();
    const expected = encodeSafetensors(
      [
        { name: 'a.big', shape: [CHUNK_ELEMENTS * 2 + 17], data: bigHost },
        { name: 'b.w', shape: [2, 5], data: flatHost.subarray(0, 10) },
        { name: 'c.v', shape: [12], data: flatHost.subarray(10) },
      ],
      { format: 'pt' },
    );
    assert.ok(Buffer.from(await storage.read(uri)).equals(expected));
    // A source that gives the wrong number of values is refused, naming the tensor.
    const short = {
      name: 'short',
      shape: [3],
      chunks: () => arraySource({ name: 'x', shape: [2], data: new Float32Array(2) }).chunks(),
    };
    const w2 = await storage.openAtomicWriter(storage.uri('short.safetensors'));
    await assert.rejects(writeSafetensors(w2, [short]), /tensor short: its source gave 2 values for shape \[3\]/);
    await w2.abort();
    tf.dispose([big, flat]);
  } finally {
    await cleanup();
  }
});
