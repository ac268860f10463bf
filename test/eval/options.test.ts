// Eval options: one zod schema and one set of defaults for spec, CLI and activities; one reference resolver.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { EVAL_DEFAULTS, referenceOf, resolveEvalOptions } from '../../eval/options.js';
import { parseSpecText } from '../../cli/spec/load.js';
import { trainInputFromSpec } from '../../cli/spec/to-input.js';
import { ConfigError } from '../../infra/errors.js';
import { tempDir } from '../helpers/env.js';

test('the activity applies EVAL_DEFAULTS to options that leave them out', () => {
  const o = resolveEvalOptions({ everySteps: 10, extractorDir: '/x' });
  for (const [k, v] of Object.entries(EVAL_DEFAULTS)) assert.equal(o[k as keyof typeof o], v, k);
  assert.equal(o.metric, undefined, 'the metric is resolved against the extractor later (KID below feature_dim)');
});

test('a spec eval section without values gets the same defaults the activity applies', () => {
  const spec = parseSpecText(
    'version: 1\nname: web\nsources:\n  - path: urls.csv\ntrain:\n  total_steps: 20\neval:\n  every_steps: 10\n  extractor: /x\n',
    'spec.yaml',
  );
  const fromSpec = trainInputFromSpec(spec).eval!;
  const resolved = resolveEvalOptions(fromSpec);
  assert.deepEqual(resolved, resolveEvalOptions({ everySteps: 10, extractorDir: '/x' }));
  assert.equal(fromSpec.sampleCount, EVAL_DEFAULTS.sampleCount);
  assert.equal(fromSpec.patience, EVAL_DEFAULTS.patience);
});

const bad: [string, Record<string, unknown>, RegExp][] = [
  ['sample count below 2', { sampleCount: 1 }, /sampleCount: /],
  ['fractional patience', { patience: 1.5 }, /patience: /],
  ['negative min delta', { minDelta: -0.1 }, /minDelta: /],
  ['unknown metric', { metric: 'lpips' }, /metric: /],
  ['both references', { referenceDataset: 'a@v1', referenceDir: '/imgs' }, /one of referenceDataset and referenceDir/],
  ['clip_score without a CLIP dir', { metric: 'clip_score' }, /clip_score needs clipModelDir/],
  ['unknown field', { samples: 10 }, /samples/],
  ['guidance below 1', { guidanceScale: 0.5 }, /guidanceScale: /],
];
for (const [what, extra, re] of bad) {
  test(`eval options error: ${what} names the field and the fix`, () => {
    assert.throws(
      () => resolveEvalOptions({ everySteps: 10, extractorDir: '/x', ...extra } as never),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError, String(err));
        assert.match(err.message, /^eval options: /);
        assert.match(err.message, re);
        assert.match(err.message, /Fix: /);
        return true;
      },
    );
  });
}

test('referenceOf: dataset versions and manifests are datasets, directories are directories', () => {
  const tmp = tempDir('kiln-ref-');
  const dir = tmp.path;
  mkdirSync(join(dir, 'coco-val'));
  assert.deepEqual(referenceOf('coco@v3'), { referenceDataset: 'coco@v3' });
  assert.deepEqual(referenceOf('coco@3'), { referenceDataset: 'coco@3' });
  assert.deepEqual(referenceOf('file:///data/datasets/coco/v3/manifest.json'), {
    referenceDataset: 'file:///data/datasets/coco/v3/manifest.json',
  });
  assert.deepEqual(
    referenceOf('coco-val', dir),
    { referenceDir: join(dir, 'coco-val') },
    'an existing directory wins over a bare name',
  );
  assert.deepEqual(
    referenceOf('coco', dir),
    { referenceDataset: 'coco' },
    'a bare name that is no directory: the dataset (newest version)',
  );
  assert.deepEqual(referenceOf('./missing/images', dir), { referenceDir: join(dir, 'missing/images') });
  tmp.cleanup();
});
