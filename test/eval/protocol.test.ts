/**
 * One evaluation protocol across the spec, the CLI and the activity (issue 15): the sample-count
 * default, the stopping metric's default (KID below feature_dim samples), the metric's direction in
 * checkpoint retention, and failed / NaN evaluations surviving the JSON round trip Temporal makes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Command } from 'commander';
import { parseSpecText } from '../../cli/spec/load.js';
import { trainInputFromSpec } from '../../cli/spec/to-input.js';
import { registerTrainCommands, trainInputFromFlags } from '../../cli/commands/train.js';
import { DEFAULT_EVAL_SAMPLE_COUNT, DEFAULT_REFERENCE_MAX_IMAGES, defaultStoppingMetric } from '../../eval/protocol.js';
import { earlyStoppingDecision } from '../../eval/early-stopping.js';
import { evalPointFromRecord, resolveStoppingMetric, type EvalPoint } from '../../activities/eval.js';
import { withMetricMode } from '../../activities/train.js';
import { resolveTrainingConfig } from '../../training/config.js';

const SPEC =
  'version: 1\nname: web\nsources:\n  - path: urls.csv\ntrain:\n  total_steps: 100\neval:\n  every_steps: 10\n  extractor: x\n';

void test('sample count: spec, CLI and activity share DEFAULT_EVAL_SAMPLE_COUNT (256)', () => {
  assert.equal(DEFAULT_EVAL_SAMPLE_COUNT, 256);
  const spec = parseSpecText(SPEC, 'spec.yaml');
  assert.equal(spec.eval!.sample_count, DEFAULT_EVAL_SAMPLE_COUNT, 'spec default');
  assert.equal(spec.eval!.reference_max_images, DEFAULT_REFERENCE_MAX_IMAGES, 'spec reference cap');
  const fromSpec = trainInputFromSpec(spec) as { eval: { sampleCount: number; metric?: string } };
  assert.equal(fromSpec.eval.sampleCount, DEFAULT_EVAL_SAMPLE_COUNT);
  assert.equal(fromSpec.eval.metric, undefined, 'no metric in the spec: resolved later from feature_dim');
  const fromFlags = trainInputFromFlags({
    dataset: 'd@v1',
    chunkSteps: 10,
    evalEvery: 10,
    patience: 3,
    minDelta: 0,
    extractorDir: '/x',
  } as Parameters<typeof trainInputFromFlags>[0]);
  assert.equal(fromFlags.eval!.sampleCount, DEFAULT_EVAL_SAMPLE_COUNT, 'CLI default');
  const help = new Command();
  registerTrainCommands(help);
  const text = help.commands[0]!.helpInformation();
  assert.match(
    text,
    new RegExp(`--eval-samples <n>\\s+generated samples per evaluation \\(default ${DEFAULT_EVAL_SAMPLE_COUNT}\\)`),
    'CLI help',
  );
  // The activity (no sampleCount given) evaluates DEFAULT_EVAL_SAMPLE_COUNT samples: below Inception's 2048 it stops on KID,
  // with the tiny extractor's 64 dimensions on FID.
  assert.equal(resolveStoppingMetric({}, 2048), 'kid');
  assert.equal(resolveStoppingMetric({}, DEFAULT_EVAL_SAMPLE_COUNT), 'fid');
  assert.equal(resolveStoppingMetric({}, DEFAULT_EVAL_SAMPLE_COUNT + 1), 'kid');
  assert.equal(resolveStoppingMetric({ metric: 'fid' }, 2048), 'fid', 'an explicit metric wins');
  assert.equal(defaultStoppingMetric(5000, 2048), 'fid');
});

void test('the spec accepts metric kid and refuses an unknown one', () => {
  assert.equal(parseSpecText(`${SPEC}  metric: kid\n`, 's').eval!.metric, 'kid');
  assert.throws(() => parseSpecText(`${SPEC}  metric: is\n`, 's'), /eval\.metric/);
});

void test('checkpoint retention follows the stopping metric: metricMode min for KID/FID, max for CLIP score', () => {
  assert.equal(resolveTrainingConfig(withMetricMode({}, 'max', 'clip_score')).checkpoint.metricMode, 'max');
  assert.equal(resolveTrainingConfig(withMetricMode({}, 'min', 'kid')).checkpoint.metricMode, 'min');
  assert.throws(
    () =>
      withMetricMode(
        { checkpoint: { metricMode: 'min' } } as Parameters<typeof withMetricMode>[0],
        'max',
        'clip_score',
      ),
    { code: 'KILN_CONFIG' },
  );
});

void test('NaN FIDs survive the JSON round trip as failed evaluations and stop the run after patience (issue 15)', () => {
  // What the eval activity returns for a diverged model, serialised as Temporal does (NaN -> null).
  const record = (step: number, fid: number, kid?: number) => ({
    step,
    fid,
    clipScore: null,
    ...(kid === undefined ? {} : { kid }),
  });
  const wire = (p: EvalPoint): EvalPoint => JSON.parse(JSON.stringify(p)) as EvalPoint;
  const history = [wire(evalPointFromRecord(record(10, 40)))];
  for (const step of [20, 30, 40]) history.push(wire(evalPointFromRecord(record(step, NaN))));
  assert.equal(history[1]!.fid, null);
  assert.match(history[1]!.failed!, /FID not finite/);
  const d = earlyStoppingDecision(history, { metric: 'fid' });
  assert.equal(d.stop, true, d.reason);
  assert.equal(d.bestStep, 10);
  assert.equal(d.sinceImprovement, 3);
  // KID: same for a NaN KID; a finite KID with a NaN FID still counts as its value.
  const k = [record(10, 40, 0.2), record(20, NaN, NaN), record(30, NaN, 0.1)].map((r) => wire(evalPointFromRecord(r)));
  const dk = earlyStoppingDecision(k, { metric: 'kid', patience: 2 });
  assert.equal(dk.bestStep, 30, dk.reason);
  assert.equal(earlyStoppingDecision(k.slice(0, 2), { metric: 'kid', patience: 1 }).stop, true);
  // A record from before KID existed (no kid field) is not a failure.
  assert.equal(evalPointFromRecord(record(10, 40)).failed, undefined);
});
