import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, rmSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadCaptioner } from '../../datasets/filter/captioner.js';
import { loadClipScorer } from '../../datasets/filter/clip-scorer.js';
import { checkModelDir, EXPECTED_MODEL_FILES, hashModelDir } from '../../datasets/filter/model-dir.js';
import { KilnError } from '../../infra/errors.js';
import { CAPTIONER_DIR, CLIP_DIR, reference } from './fixtures.js';

let tmp: string;
before(() => {
  tmp = mkdtempSync(join(tmpdir(), 'kiln-filter-models-'));
  cpSync(CLIP_DIR, join(tmp, 'clip-no-vision'), { recursive: true });
  unlinkSync(join(tmp, 'clip-no-vision', 'onnx', 'vision_model.onnx'));
  cpSync(CAPTIONER_DIR, join(tmp, 'captioner-no-decoder'), { recursive: true });
  unlinkSync(join(tmp, 'captioner-no-decoder', 'onnx', 'decoder_model_merged.onnx'));
  unlinkSync(join(tmp, 'captioner-no-decoder', 'tokenizer.json'));
});
after(() => rmSync(tmp, { recursive: true, force: true }));

interface MissingCase {
  name: string;
  load: () => Promise<unknown>;
  dir: string;
  missing: string[];
}
const cases = (): MissingCase[] => [
  { name: 'clip dir absent', load: () => loadClipScorer(join(tmp, 'nope')), dir: join(tmp, 'nope'), missing: [] },
  {
    name: 'clip without vision graph',
    load: () => loadClipScorer(join(tmp, 'clip-no-vision')),
    dir: join(tmp, 'clip-no-vision'),
    missing: ['onnx/vision_model.onnx'],
  },
  { name: 'captioner dir absent', load: () => loadCaptioner(join(tmp, 'nope2')), dir: join(tmp, 'nope2'), missing: [] },
  {
    name: 'captioner without decoder and tokenizer',
    load: () => loadCaptioner(join(tmp, 'captioner-no-decoder')),
    dir: join(tmp, 'captioner-no-decoder'),
    missing: ['tokenizer.json', 'onnx/decoder_model_merged.onnx'],
  },
  {
    name: 'a file where a dir should be',
    load: () => loadClipScorer(join(CLIP_DIR, 'config.json')),
    dir: join(CLIP_DIR, 'config.json'),
    missing: [],
  },
];

void test('a missing or incomplete model dir is a KilnError naming the dir and the files expected', async () => {
  for (const c of cases()) {
    await assert.rejects(
      c.load(),
      (e: unknown) => {
        assert.ok(e instanceof KilnError, c.name);
        assert.equal(e.code, 'KILN_MISSING_FILE', c.name);
        assert.equal(e.name, 'MissingFileError');
        assert.ok(e.message.includes(c.dir), `${c.name}: message names the directory`);
        for (const f of c.missing)
          assert.ok(e.message.includes(`is missing`) && e.message.includes(f), `${c.name}: names ${f}`);
        if (c.missing.length === 0) assert.match(e.message, /does not exist/);
        const kind = c.name.startsWith('clip') || c.name.startsWith('a file') ? 'clip' : 'captioner';
        for (const f of EXPECTED_MODEL_FILES[kind]) assert.ok(e.message.includes(f), `${c.name}: lists expected ${f}`);
        assert.match(e.fix, /make_tiny_models\.py|optimum/);
        return true;
      },
      c.name,
    );
  }
});

void test('complete dirs pass and hash every file like the generator did', async () => {
  assert.equal(await checkModelDir(CAPTIONER_DIR, 'captioner'), CAPTIONER_DIR);
  const files = await hashModelDir(CAPTIONER_DIR);
  const expected = Object.entries(reference.files)
    .filter(([p]) => p.startsWith('vit-gpt2-tiny/'))
    .map(([p, sha256]) => ({ path: p.slice('vit-gpt2-tiny/'.length), sha256 }))
    .sort((a, b) => (a.path < b.path ? -1 : 1));
  assert.deepEqual(
    files.map(({ path, sha256 }) => ({ path, sha256 })),
    expected,
  );
  assert.ok(files.every((f) => f.bytes > 0));
});
