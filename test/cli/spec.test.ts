import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseSpecText, loadSpec } from '../../cli/spec/load.js';
import { ConfigError, MissingFileError } from '../../infra/errors.js';
import { tempDir } from '../helpers/env.js';

const minimal = 'version: 1\nname: web\nsources:\n  - path: urls.csv\n';

test('a minimal spec gets the documented defaults', () => {
  const s = parseSpecText(minimal, 'spec.yaml');
  assert.equal(s.crawl.rows_per_shard, 10_000);
  assert.equal(s.crawl.image_size, 256);
  assert.equal(s.crawl.url_col, 'url');
  assert.equal(s.filter, undefined);
});

const bad: [string, string, RegExp][] = [
  ['wrong type', `${minimal}crawl:\n  image_size: big\n`, /crawl\.image_size: .*number/],
  ['unknown field', `${minimal}crawl:\n  imagesize: 64\n`, /crawl.*imagesize/],
  [
    'bad enum',
    `${minimal}crawl:\n  resize_mode: stretch\n`,
    /crawl\.resize_mode: .*(no|keep_ratio|center_crop|border)/,
  ],
  ['unsafe name', 'version: 1\nname: ../etc\nsources:\n  - path: a.csv\n', /name: use 1-100 letters/],
  ['no sources', 'version: 1\nname: web\nsources: []\n', /sources: list at least one URL list/],
  ['eval without train', `${minimal}eval:\n  every_steps: 10\n  extractor: x\n`, /eval: eval needs a train section/],
  [
    'eval never runs',
    `${minimal}train:\n  total_steps: 5\neval:\n  every_steps: 10\n  extractor: x\n`,
    /eval\.every_steps: every_steps \(10\) exceeds/,
  ],
  ['threshold out of range', `${minimal}filter:\n  clip_model: m\n  threshold: 3\n`, /filter\.threshold/],
  ['bad version', 'version: 2\nname: web\nsources:\n  - path: a.csv\n', /version: the spec format version/],
  ['not yaml', 'version: [1\n', /not valid YAML/],
];
for (const [what, text, re] of bad) {
  test(`spec error: ${what} names the field and the fix`, () => {
    assert.throws(
      () => parseSpecText(text, 'spec.yaml'),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError, String(err));
        assert.match(err.message, re);
        assert.match(err.message, /Fix: /);
        return true;
      },
    );
  });
}

test('loadSpec resolves paths relative to the spec file and names a missing one', () => {
  const d = tempDir();
  try {
    mkdirSync(join(d.path, 'lists'));
    writeFileSync(join(d.path, 'lists', 'urls.csv'), 'url,caption\n');
    writeFileSync(join(d.path, 'ok.yaml'), 'version: 1\nname: web\nsources:\n  - path: lists/urls.csv\n');
    assert.equal(loadSpec(join(d.path, 'ok.yaml')).sources[0]!.path, join(d.path, 'lists', 'urls.csv'));
    writeFileSync(join(d.path, 'missing.yaml'), 'version: 1\nname: web\nsources:\n  - path: nope.csv\n');
    assert.throws(
      () => loadSpec(join(d.path, 'missing.yaml')),
      (err: unknown) => err instanceof MissingFileError && /sources\.0\.path/.test(err.message),
    );
    assert.throws(() => loadSpec(join(d.path, 'absent.yaml')), MissingFileError);
  } finally {
    d.cleanup();
  }
});

test("a training config's VAE and CLIP directories resolve against the spec file, and a missing one is named", () => {
  const d = tempDir();
  try {
    writeFileSync(join(d.path, 'urls.csv'), 'url,caption\n');
    mkdirSync(join(d.path, 'models', 'vae'), { recursive: true });
    mkdirSync(join(d.path, 'models', 'clip'), { recursive: true });
    const train =
      'train:\n  total_steps: 10\n  config:\n    codec:\n      vae: models/vae\n    textEncoder:\n      clipDir: models/clip\n';
    writeFileSync(join(d.path, 'ok.yaml'), `${minimal}${train}`);
    const c = loadSpec(join(d.path, 'ok.yaml')).train!.config as {
      codec: { vae: string };
      textEncoder: { clipDir: string };
    };
    assert.equal(c.codec.vae, join(d.path, 'models', 'vae'));
    assert.equal(c.textEncoder.clipDir, join(d.path, 'models', 'clip'));
    writeFileSync(
      join(d.path, 'typo.yaml'),
      `${minimal}train:\n  total_steps: 10\n  config:\n    codec:\n      vae: models/vea\n`,
    );
    assert.throws(
      () => loadSpec(join(d.path, 'typo.yaml')),
      (err: unknown) =>
        err instanceof MissingFileError &&
        /train\.config\.codec\.vae/.test(err.message) &&
        err.message.includes(join(d.path, 'models', 'vea')),
    );
  } finally {
    d.cleanup();
  }
});
