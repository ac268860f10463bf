import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../../infra/config.js';
import { MissingFileError } from '../../infra/errors.js';
import { selectTfBackend } from '../../infra/tfjs-backend.js';
import { loadClipTextWeights, loadClipTokenizer, readClipTextShape } from '../../training/clip-weights.js';
import { ParamStore } from '../../training/params.js';
import { defineTextEncoder, encodeText } from '../../training/text-encoder.js';

await selectTfBackend();
const DIR = join(PROJECT_ROOT, 'fixtures', 'training', 'tiny-clip');
const ref = JSON.parse(
  await readFile(join(PROJECT_ROOT, 'fixtures', 'training', 'tiny-clip-reference.json'), 'utf8'),
) as {
  captions: string[];
  maxTokens: number;
  ids: number[];
  mask: number[];
  hidden: number[];
  shape: number[];
};

void test('reads the text tower shape from a CLIP config.json', async () => {
  assert.deepEqual(await readClipTextShape(DIR), {
    vocabSize: 524,
    maxTokens: 16,
    width: 32,
    depth: 2,
    heads: 4,
    mlpRatio: 2,
    causal: true,
    activation: 'quick_gelu',
    layerNormEps: 1e-5,
    dropout: 0,
  });
});

void test('CLIP BPE tokenizer (transformers.js, offline) gives the ids Python transformers gives', async () => {
  const tok = await loadClipTokenizer(DIR, ref.maxTokens);
  const batch = tok.encode(ref.captions);
  assert.deepEqual([...batch.ids], ref.ids);
  assert.deepEqual([...batch.mask], ref.mask);
  assert.equal(tok.vocabSize, 524);
});

void test('CLIP text weights load by name and reproduce CLIPTextModel.last_hidden_state', async () => {
  const shape = await readClipTextShape(DIR);
  const store = new ParamStore(0);
  defineTextEncoder(store, shape);
  const { loaded, unused } = await loadClipTextWeights(store, DIR);
  assert.equal(loaded, store.list('text').length);
  assert.deepEqual(unused, []);
  const tokens = {
    ids: Int32Array.from(ref.ids),
    mask: Float32Array.from(ref.mask),
    batch: ref.captions.length,
    maxTokens: ref.maxTokens,
  };
  const out = await encodeText(store, shape, tokens, null).data();
  assert.equal(out.length, ref.hidden.length);
  // Compare real (unpadded) positions; padded positions are masked out downstream.
  let maxErr = 0;
  for (let i = 0; i < out.length; i++) {
    if (ref.mask[Math.floor(i / shape.width)] === 1) maxErr = Math.max(maxErr, Math.abs(out[i]! - ref.hidden[i]!));
  }
  assert.ok(maxErr < 1e-4, `max error ${maxErr}`);
  store.dispose();
});

void test('a directory without CLIP files is a MissingFileError naming the file', async () => {
  await assert.rejects(
    readClipTextShape(join(PROJECT_ROOT, 'fixtures', 'training')),
    (err: unknown) => err instanceof MissingFileError && /config\.json/.test(err.message),
  );
});
