import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { loadCaptioner, type Captioner } from '../../datasets/filter/captioner.js';
import { assertClose, CAPTIONER_DIR, reference, referenceImages } from './fixtures.js';

const images = referenceImages();
const { greedy, prompt } = reference.captioner.runs;
let captioner: Captioner;
before(async () => {
  captioner = await loadCaptioner(CAPTIONER_DIR, {
    device: 'cpu',
    maxNewTokens: reference.captioner.max_new_tokens,
    batchSize: 2,
  });
});
after(async () => {
  await captioner.dispose();
});

void test('the reference greedy decode is robust (top-2 logit gap far above float noise)', () => {
  assert.ok(greedy.min_logit_margin > 1e-3 && prompt.min_logit_margin > 1e-3);
});

void test('pixel tensor matches ViTImageProcessor to 1e-4', async () => {
  assertClose((await captioner.pixelValues(images)).data, reference.captioner.pixel_values.data, 1e-4, 'pixel_values');
});

void test('greedy token ids equal transformers generate() exactly', async () => {
  assert.deepEqual(await captioner.generateSequences(images), greedy.sequences);
});

void test('captions equal the reference decoded text', async () => {
  assert.deepEqual(
    await captioner.caption(images),
    greedy.texts.map((t) => t.trim()),
  );
});

void test('a prompt is fed as decoder prefix and stripped from the caption', async () => {
  const c = await loadCaptioner(CAPTIONER_DIR, {
    device: 'cpu',
    maxNewTokens: reference.captioner.max_new_tokens,
    prompt: prompt.prompt,
    batchSize: 5,
  });
  try {
    assert.deepEqual(c.options.prompt, prompt.prompt);
    assert.deepEqual(await c.generateSequences(images), prompt.sequences);
    assert.deepEqual(
      await c.caption(images),
      prompt.texts.map((t) => t.trim()),
    );
  } finally {
    await c.dispose();
  }
});

void test('maxNewTokens bounds the generated length', async () => {
  const c = await loadCaptioner(CAPTIONER_DIR, { device: 'cpu', maxNewTokens: 3 });
  try {
    const seqs = await c.generateSequences(images.slice(0, 2));
    assert.deepEqual(
      seqs,
      greedy.sequences.slice(0, 2).map((s) => s.slice(0, 4)),
    );
  } finally {
    await c.dispose();
  }
});

void test('captionRows keeps undecodable rows as null with a reason', async () => {
  const res = await captioner.captionRows([null, images[0] as Uint8Array, new Uint8Array([1, 2])]);
  assert.equal(res.captions[0], null);
  assert.equal(res.captions[1], (greedy.texts[0] as string).trim());
  assert.equal(res.captions[2], null);
  assert.equal(res.errors[0], 'no image bytes');
  assert.match(res.errors[2] ?? '', /^undecodable image/);
});

void test('options it cannot honour are ConfigErrors, not silent fallbacks', async () => {
  const table: [Record<string, unknown>, RegExp][] = [
    [{ numBeams: 0 }, /numBeams is 0/],
    [{ maxNewTokens: 0 }, /maxNewTokens is 0/],
    [{ batchSize: 1.5 }, /batchSize is 1.5/],
  ];
  for (const [opts, msg] of table) {
    await assert.rejects(
      loadCaptioner(CAPTIONER_DIR, opts),
      (e: Error & { code?: string }) => e.code === 'KILN_CONFIG' && msg.test(e.message),
      JSON.stringify(opts),
    );
  }
});
