import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { loadClipScorer, type ClipScorer } from '../../datasets/filter/clip-scorer.js';
import { assertClose, CLIP_DIR, reference, referenceImages } from './fixtures.js';

let scorer: ClipScorer;
const images = referenceImages();
before(async () => {
  scorer = await loadClipScorer(CLIP_DIR, { device: 'cpu', batchSize: 2, threads: 1 });
});
after(async () => {
  await scorer.dispose();
});

void test('records the device it runs on', () => {
  assert.equal(scorer.device.device, 'cpu');
  assert.equal(scorer.device.requested, 'cpu');
  assert.equal(scorer.batchSize, 2);
});

void test('token ids match CLIPTokenizerFast (padding, truncation keeping EOS at 77)', () => {
  assert.deepEqual(scorer.tokenize(reference.captions), reference.clip.input_ids);
  const longest = scorer.tokenize([reference.captions[4] as string])[0] as number[];
  assert.equal(longest.length, 77);
});

void test('pixel tensor matches transformers to 1e-4', async () => {
  const px = await scorer.pixelValues(images);
  assert.deepEqual(px.dims, reference.clip.pixel_values.shape);
  assertClose(px.data, reference.clip.pixel_values.data, 1e-4, 'pixel_values');
});

void test('image and text embeddings match transformers (PyTorch) to 1e-4', async () => {
  assertClose(await scorer.embedImages(images), reference.clip.image_embeds.data, 1e-4, 'image_embeds');
  assertClose(await scorer.embedTexts(reference.captions), reference.clip.text_embeds.data, 1e-4, 'text_embeds');
});

void test('cosine scores match transformers to 1e-4, for every batch size', async () => {
  assertClose(await scorer.score(images, reference.captions), reference.clip.scores, 1e-4, 'scores (batch 2)');
  for (const batchSize of [1, 5, 64]) {
    const s = await loadClipScorer(CLIP_DIR, { device: 'cpu', batchSize });
    try {
      assertClose(
        await s.score(images, reference.captions),
        reference.clip.scores,
        1e-4,
        `scores (batch ${batchSize})`,
      );
    } finally {
      await s.dispose();
    }
  }
});

void test('rows without an image, with bad bytes or without a caption get NaN and a reason', async () => {
  const res = await scorer.scoreRows(
    [
      images[0] as Uint8Array,
      null,
      new Uint8Array([0xff, 0xd8, 0x00]),
      images[3] as Uint8Array,
      images[4] as Uint8Array,
    ],
    [reference.captions[0] as string, 'x', 'y', null, reference.captions[4] as string],
  );
  assertClose(
    [res.scores[0] as number, res.scores[4] as number],
    [reference.clip.scores[0] as number, reference.clip.scores[4] as number],
    1e-4,
    'good rows',
  );
  assert.ok(Number.isNaN(res.scores[1]) && Number.isNaN(res.scores[2]) && Number.isNaN(res.scores[3]));
  assert.deepEqual(
    res.errors.map((e) => (e === null ? null : e.split(':')[0])),
    [null, 'no image bytes', 'undecodable image', 'no caption', null],
  );
  await assert.rejects(scorer.score(images, ['one caption']), RangeError);
});

void test('model file hashes cover every file, as the generator recorded them', async () => {
  const files = await scorer.fileHashes();
  const expected = Object.entries(reference.files).filter(([p]) => p.startsWith('clip-tiny/'));
  assert.equal(files.length, expected.length);
  for (const [p, sha] of expected) {
    assert.equal(files.find((f) => `clip-tiny/${f.path}` === p)?.sha256, sha, p);
  }
});
