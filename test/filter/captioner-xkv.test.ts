/**
 * The cross-attention split (scripts/models/split_cross_attention.py) on the tiny ViT-GPT2 fixture:
 * fixtures/models/vit-gpt2-tiny-xkv is vit-gpt2-tiny plus onnx/decoder_cross_kv.onnx,
 * onnx/decoder_with_past_xkv.onnx and onnx/decoder_xkv.json. Greedy and beam token ids must equal
 * transformers' (reference.json, captioner-beams.json) and the merged decoder's; a split that does
 * not match the directory is refused.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadCaptioner, type CaptionerOptions } from '../../datasets/filter/captioner.js';
import {
  beamReference as beams,
  beamRunOptions,
  CAPTIONER_DIR,
  MODELS,
  reference,
  referenceImages,
} from './fixtures.js';
import { modelCopies } from './model-copies.js';

const XKV_DIR = `${MODELS}/vit-gpt2-tiny-xkv`;
const images = referenceImages();
const maxNewTokens = reference.captioner.max_new_tokens;
const copyModel = modelCopies('kiln-xkv-');

/** A copy of the split fixture with generation_config.json / decoder_xkv.json fields replaced. */
function copyWith(name: string, gen: Record<string, unknown> = {}, meta: Record<string, unknown> = {}): string {
  return copyModel(XKV_DIR, name, { 'generation_config.json': gen, 'onnx/decoder_xkv.json': meta });
}

async function sequences(
  dir: string,
  opts: CaptionerOptions,
  imgs = images,
): Promise<{ seqs: number[][]; path: string }> {
  const cap = await loadCaptioner(dir, { device: 'cpu', ...opts });
  try {
    return { seqs: await cap.generateSequences(imgs), path: cap.options.decoder.path };
  } finally {
    await cap.dispose();
  }
}

void test("the fixture split is current: it names the fixture decoder's sha256 and both graphs", () => {
  const meta = JSON.parse(readFileSync(`${XKV_DIR}/onnx/decoder_xkv.json`, 'utf8')) as {
    source_sha256: string;
    first_step: string;
    frontier: unknown[];
    check: { max_abs_diff: number };
  };
  assert.equal(meta.source_sha256, reference.files['vit-gpt2-tiny/onnx/decoder_model_merged.onnx']);
  assert.equal(meta.first_step, 'split');
  assert.ok(meta.frontier.length > 0 && meta.check.max_abs_diff <= 1e-4);
});

void test('greedy with the split: token ids equal transformers generate() (with and without a prompt), split path recorded', async () => {
  const { greedy, prompt } = reference.captioner.runs;
  const plain = await sequences(XKV_DIR, { maxNewTokens, batchSize: 2 });
  assert.equal(plain.path, 'split');
  assert.deepEqual(plain.seqs, greedy.sequences);
  assert.deepEqual(
    (await sequences(XKV_DIR, { maxNewTokens, batchSize: 5, prompt: prompt.prompt as string })).seqs,
    prompt.sequences,
  );
  assert.deepEqual(
    (await sequences(XKV_DIR, { maxNewTokens: 3 }, images.slice(0, 2))).seqs,
    greedy.sequences.slice(0, 2).map((s) => s.slice(0, 4)),
  );
  const cap = await loadCaptioner(XKV_DIR, { device: 'cpu', maxNewTokens });
  try {
    assert.deepEqual(
      await cap.caption(images),
      greedy.texts.map((t) => t.trim()),
    );
    assert.deepEqual(cap.options.decoder.files, ['onnx/decoder_cross_kv.onnx', 'onnx/decoder_with_past_xkv.onnx']);
    assert.ok(
      (await cap.fileHashes()).some((f) => f.path === 'onnx/decoder_cross_kv.onnx'),
      'split graphs are hashed for lineage',
    );
  } finally {
    await cap.dispose();
  }
});

void test("greedy with an early EOS: rows end at the EOS and are padded, as transformers' greedy search does", async () => {
  // 265 is a frequent token of the random decoder: some rows end early, one runs to max length. EOS
  // does not change the logits, so transformers' result is its greedy reference cut after the first
  // 265 and padded with pad_token_id (its `next_tokens * unfinished + pad * (1 - unfinished)`).
  const eos = 265,
    pad = 7;
  const expected = reference.captioner.runs.greedy.sequences.map((s) => {
    const end = s.indexOf(eos, 1);
    return end < 0 ? s : [...s.slice(0, end + 1), ...new Array<number>(s.length - end - 1).fill(pad)];
  });
  assert.ok(expected.some((s) => s.includes(pad)) && expected.some((s) => !s.includes(eos)), 'the case exercises both');
  const split = await sequences(copyWith('greedy-eos', { eos_token_id: eos, pad_token_id: pad }), {
    maxNewTokens,
    batchSize: 5,
  });
  assert.equal(split.path, 'split');
  assert.deepEqual(split.seqs, expected);
});

void test('without a split the merged decoder runs and the captioner says how to make the split', async () => {
  const cap = await loadCaptioner(CAPTIONER_DIR, { device: 'cpu', maxNewTokens: 2 });
  try {
    assert.equal(cap.options.decoder.path, 'merged');
    assert.match(cap.options.decoder.reason, /decoder_xkv\.json/);
    assert.match(cap.options.decoder.reason, /split_cross_attention\.py/);
  } finally {
    await cap.dispose();
  }
});

for (const run of beams.runs) {
  void test(`${run.name} with the split: token ids equal transformers generate(num_beams=${run.num_beams})`, async () => {
    const dir = run.eos_token_id === null ? XKV_DIR : copyWith(`${run.name}`, { eos_token_id: run.eos_token_id });
    const got = await sequences(dir, { ...beamRunOptions(run), batchSize: images.length });
    assert.equal(got.path, 'split');
    assert.deepEqual(got.seqs, run.sequences);
  });
}

void test('a split whose first step is recorded as "merged" runs step 0 on the merged decoder, same ids', async () => {
  const dir = copyWith('first-merged', {}, { first_step: 'merged' });
  const run = beams.runs.find((r) => r.name === 'beams3')!;
  const cap = await loadCaptioner(dir, { device: 'cpu', numBeams: 3, maxNewTokens: run.max_new_tokens });
  try {
    assert.ok(cap.options.decoder.files.includes('onnx/decoder_model_merged.onnx'));
    assert.deepEqual(await cap.generateSequences(images), run.sequences);
  } finally {
    await cap.dispose();
  }
  assert.deepEqual((await sequences(dir, { maxNewTokens })).seqs, reference.captioner.runs.greedy.sequences);
});

void test('beams: the cross-attention tensors per image repeated per beam give the same ids as computing them on every row', async () => {
  const meta = JSON.parse(readFileSync(`${XKV_DIR}/onnx/decoder_xkv.json`, 'utf8')) as {
    per_image: boolean;
    frontier: { kind: string }[];
  };
  assert.equal(meta.per_image, true);
  assert.deepEqual([...new Set(meta.frontier.map((f) => f.kind))].sort(), ['batch_size', 'fixed', 'rows']);
  const rowsDir = copyWith('per-row', {}, { per_image: false });
  for (const name of ['beams3', 'beams3_short']) {
    const run = beams.runs.find((r) => r.name === name)!;
    const opts = { numBeams: run.num_beams, maxNewTokens: run.max_new_tokens, batchSize: images.length };
    assert.deepEqual((await sequences(rowsDir, opts)).seqs, run.sequences, `${name} per row`);
    assert.deepEqual(
      (await sequences(XKV_DIR, { ...opts, batchSize: 2 })).seqs,
      run.sequences,
      `${name} per image, batches of 2`,
    );
  }
});

void test('a stale split (decoder or graph changed since splitting, or a graph missing) is a ConfigError naming the file and the fix', async () => {
  const stale = copyWith('stale', {}, { source_sha256: '0'.repeat(64) });
  const missing = copyWith('missing');
  rmSync(join(missing, 'onnx/decoder_cross_kv.onnx'));
  const edited = copyWith('edited');
  writeFileSync(
    join(edited, 'onnx/decoder_with_past_xkv.onnx'),
    readFileSync(join(CAPTIONER_DIR, 'onnx/decoder_model_merged.onnx')),
  );
  const cases: [string, RegExp][] = [
    [stale, /decoder_model_merged\.onnx has sha256 ec0886dafb0b…, the split recorded 000000000000…/],
    [missing, /decoder_cross_kv\.onnx is missing/],
    [edited, /decoder_with_past_xkv\.onnx has sha256/],
  ];
  for (const [dir, detail] of cases) {
    for (const numBeams of [1, 3]) {
      await assert.rejects(
        loadCaptioner(dir, { device: 'cpu', numBeams }),
        (e: Error & { code?: string; fix?: string }) => {
          assert.equal(e.code, 'KILN_CONFIG');
          assert.ok(e.message.includes(join(dir, 'onnx/decoder_xkv.json')), e.message);
          assert.match(e.message, detail);
          assert.match(e.fix ?? '', /split_cross_attention\.py/);
          assert.match(e.fix ?? '', /delete onnx\/decoder_xkv\.json|delete/);
          return true;
        },
        `${dir} beams ${numBeams}`,
      );
    }
  }
});
