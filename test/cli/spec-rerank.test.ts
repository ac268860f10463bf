/**
 * CLIP reranking from the spec and the CLI (issue 18): `filter.caption_candidates` (+ sampling fields)
 * and `kiln run filter --caption-candidates`: accepted and mapped to filterWorkflow's captionCandidates,
 * bad combinations refused naming the field and the fix, and job identities of specs and commands
 * without the option unchanged (ids pinned as main computed them before the option existed).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../../infra/config.js';
import { parseSpecText } from '../../cli/spec/load.js';
import { pipelineInputFromSpec } from '../../cli/spec/to-input.js';
import { specJobId } from '../../cli/spec/identity.js';
import { filterIdentity, filterInputFromFlags, type FilterFlags } from '../../cli/commands/filter.js';
import { ConfigError } from '../../infra/errors.js';

const base =
  'version: 1\nname: web\nsources:\n  - path: /nonexistent/urls.csv\nfilter:\n  clip_model: /models/clip\n  captioner_model: /models/blip\n  num_beams: 3\n';
const spec = (extra = '') => parseSpecText(`${base}${extra}`, 'spec.yaml');
const flags: FilterFlags = {
  dataset: 'web',
  fromVersion: 1,
  clipModel: '/models/clip',
  captioner: '/models/blip',
  numBeams: 3,
};

void test('caption_candidates maps to captionCandidates {count, select: clip}; sampling fields map too; absent -> no field', () => {
  assert.deepEqual(pipelineInputFromSpec(spec('  caption_candidates: 3\n')).filter!.captionCandidates, {
    count: 3,
    select: 'clip',
  });
  const sampled = spec(
    '  caption_candidates: 4\n  caption_candidates_from: sampling\n  caption_candidates_seed: 7\n' +
      '  caption_candidates_temperature: 0.7\n  caption_candidates_top_p: 0.9\n',
  );
  assert.deepEqual(pipelineInputFromSpec(sampled).filter!.captionCandidates, {
    count: 4,
    select: 'clip',
    from: 'sampling',
    seed: 7,
    temperature: 0.7,
    topP: 0.9,
  });
  assert.equal('captionCandidates' in pipelineInputFromSpec(spec()).filter!, false);
});

void test('job identities without caption_candidates are unchanged; with it they differ', () => {
  // Computed by main before caption_candidates existed (same spec and flags).
  assert.equal(specJobId(spec()), 'web-3a816b63d349');
  assert.equal(filterIdentity(filterInputFromFlags(flags)).id, 'filter-web-v1-a378bcbd0862');
  assert.notEqual(specJobId(spec('  caption_candidates: 3\n')), 'web-3a816b63d349');
  const withFlag = filterInputFromFlags({ ...flags, captionCandidates: 3 });
  assert.deepEqual(withFlag.captionCandidates, { count: 3, select: 'clip' });
  assert.notEqual(filterIdentity(withFlag).id, 'filter-web-v1-a378bcbd0862');
  assert.deepEqual(
    filterInputFromFlags({
      ...flags,
      captionCandidates: 2,
      captionCandidatesFrom: 'sampling',
      captionCandidatesSeed: 5,
      captionCandidatesTopP: 0.5,
    }).captionCandidates,
    { count: 2, select: 'clip', from: 'sampling', seed: 5, topP: 0.5 },
  );
});

const badSpecs: [string, string, RegExp][] = [
  [
    'more candidates than beams',
    '  caption_candidates: 4\n',
    /filter\.caption_candidates: caption_candidates \(4\) exceeds num_beams \(3\).*set filter\.num_beams to at least 4/,
  ],
  ['zero candidates', '  caption_candidates: 0\n', /filter\.caption_candidates/],
  ['over 16', '  caption_candidates: 17\n', /filter\.caption_candidates: .*16/],
  [
    'sampling field with beams',
    '  caption_candidates: 2\n  caption_candidates_seed: 3\n',
    /filter\.caption_candidates_seed: .*only applies to sampled candidates.*caption_candidates_from: sampling/,
  ],
  [
    'sampling field without caption_candidates',
    '  caption_candidates_from: sampling\n',
    /filter\.caption_candidates_from: .*set caption_candidates/,
  ],
  ['bad from', '  caption_candidates: 2\n  caption_candidates_from: greedy\n', /filter\.caption_candidates_from/],
  [
    'top_p over 1',
    '  caption_candidates: 2\n  caption_candidates_from: sampling\n  caption_candidates_top_p: 2\n',
    /filter\.caption_candidates_top_p/,
  ],
];
for (const [what, extra, re] of badSpecs) {
  void test(`spec refuses caption_candidates: ${what}`, () => {
    assert.throws(
      () => spec(extra),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError, String(err));
        assert.match(err.message, re);
        return true;
      },
    );
  });
}

void test('spec refuses caption_candidates without a captioner, naming captioner_model', () => {
  const text =
    'version: 1\nname: web\nsources:\n  - path: u.csv\nfilter:\n  clip_model: /m/clip\n  caption_candidates: 1\n';
  assert.throws(
    () => parseSpecText(text, 'spec.yaml'),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError, String(err));
      assert.match(err.message, /filter\.captioner_model: caption_candidates \(1\) needs a captioner/);
      return true;
    },
  );
});

const badFlags: [string, Partial<FilterFlags>, RegExp][] = [
  [
    'no captioner',
    { captioner: undefined, captionCandidates: 2 },
    /--caption-candidates.*no --captioner.*add --captioner/s,
  ],
  ['not an integer', { captionCandidates: 2.5 }, /--caption-candidates is 2\.5/],
  ['too many', { captionCandidates: 17 }, /--caption-candidates is 17/],
  ['bad from', { captionCandidates: 2, captionCandidatesFrom: 'greedy' }, /--caption-candidates-from is "greedy"/],
  [
    'sampling flag with beams',
    { captionCandidates: 2, captionCandidatesTemperature: 0.5 },
    /--caption-candidates-temperature applies only to sampled candidates.*--caption-candidates-from sampling/s,
  ],
  ['sampling flag alone', { captionCandidatesSeed: 1 }, /--caption-candidates-seed given without --caption-candidates/],
];
for (const [what, extra, re] of badFlags) {
  void test(`kiln run filter refuses --caption-candidates: ${what}`, () => {
    assert.throws(
      () => filterInputFromFlags({ ...flags, ...extra } as FilterFlags),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError, String(err));
        assert.match(err.message, re);
        return true;
      },
    );
  });
}

void test('the real CLI: kiln run filter --help lists --caption-candidates; a bad use exits 2 naming the flag and the fix', () => {
  const kiln = (args: string[]) =>
    spawnSync(process.execPath, [join(PROJECT_ROOT, 'bin', 'kiln.js'), 'run', 'filter', ...args], {
      encoding: 'utf8',
      timeout: 60_000,
    });
  const help = kiln(['--help']);
  assert.equal(help.status, 0, help.stderr);
  for (const flag of ['--caption-candidates <n>', '--caption-candidates-from', '--caption-candidates-seed'])
    assert.ok(help.stdout.includes(flag), flag);
  const bad = kiln(['--dataset', 'web', '--from-version', '1', '--clip-model', '/m/clip', '--caption-candidates', '2']);
  assert.equal(bad.status, 2, bad.stderr);
  assert.match(bad.stderr, /--caption-candidates is set but no --captioner was given/);
  assert.match(bad.stderr, /Fix: add --captioner <dir>/);
});
