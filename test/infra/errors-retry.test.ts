/**
 * Typed errors decide retries (issue 16, part 2): for every error class, an activity that throws it
 * through a real Temporal server and worker is retried or not as its `retryable` says (the stage
 * retry policy holds no list of names), and the CLI's exit code for the job's failure (and for the
 * error thrown directly) comes from its code. Subclasses behave like their parents.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { WorkflowFailedError } from '@temporalio/client';
import { ActivityFailure, ApplicationFailure } from '@temporalio/common';
import { temporalFailures } from '../../activities/failures.js';
import { EXIT, exitCodeOf } from '../../cli/exit-codes.js';
import { PROJECT_ROOT } from '../../infra/config.js';
import {
  ArtifactConflictError,
  ConfigError,
  KilnError,
  MissingFileError,
  TemporalUnavailableError,
  UnsafePathError,
} from '../../infra/errors.js';
import { LineageSchemaError } from '../../infra/lineage/store.js';
import { UrlListError } from '../../datasets/input/url-list.js';
import { ShardsNotFinishedError } from '../../datasets/crawl/manifest.js';
import { InvalidManifestError } from '../../datasets/shards/manifest.js';
import { ModelFilesChangedError } from '../../datasets/filter/stage-models.js';
import { StaleDecoderSplitError } from '../../datasets/filter/cross-kv-split.js';
import { FilterIncompleteError } from '../../datasets/filter/stage-manifest.js';
import { CheckpointError, EmptyDatasetError, ModelTooLargeError, NonFiniteLossError } from '../../training/errors.js';
import { FeatureExtractorError } from '../../eval/features.js';
import { FeatureStatisticsError } from '../../eval/statistics.js';
import { bundleTestWorkflows, temporalBinary, uniqueId } from '../helpers/env.js';
import { LineageUnavailableError } from '../../infra/lineage/sql.js';
import { LineageCopyError } from '../../infra/lineage/copy.js';

interface Case {
  make: () => Error;
  retried: boolean;
  exit: number;
}

/** Every error class an activity can throw, with what must happen to it. */
const CASES: Record<string, Case> = {
  ConfigError: { make: () => new ConfigError('bad field', 'set it'), retried: false, exit: EXIT.usage },
  UrlListError: { make: () => new UrlListError('bad list', 'fix the list'), retried: false, exit: EXIT.usage },
  StaleDecoderSplitError: {
    make: () => new StaleDecoderSplitError('/models/cap', 'decoder sha256 differs'),
    retried: false,
    exit: EXIT.usage,
  },
  UnsafePathError: {
    make: () => new UnsafePathError('"../x" escapes the data root'),
    retried: false,
    exit: EXIT.usage,
  },
  InvalidManifestError: {
    make: () => new InvalidManifestError('file:///m.json', 'not JSON'),
    retried: false,
    exit: EXIT.usage,
  },
  MissingFileError: {
    make: () => new MissingFileError('no model.onnx', 'put it there'),
    retried: false,
    exit: EXIT.missingFile,
  },
  ArtifactConflictError: {
    make: () => new ArtifactConflictError('file:///a', 'a'.repeat(64), 'b'.repeat(64)),
    retried: false,
    exit: EXIT.jobFailed,
  },
  ShardsNotFinishedError: { make: () => new ShardsNotFinishedError('d@v1', [3]), retried: false, exit: EXIT.jobFailed },
  ModelFilesChangedError: {
    make: () => new ModelFilesChangedError('/models/clip', 'model.onnx'),
    retried: false,
    exit: EXIT.jobFailed,
  },
  FilterIncompleteError: {
    make: () => new FilterIncompleteError('d@v2', 'scores', [1]),
    retried: false,
    exit: EXIT.jobFailed,
  },
  EmptyDatasetError: { make: () => new EmptyDatasetError('no rows'), retried: false, exit: EXIT.jobFailed },
  ModelTooLargeError: { make: () => new ModelTooLargeError('too big'), retried: false, exit: EXIT.jobFailed },
  NonFiniteLossError: {
    make: () => new NonFiniteLossError(7, 'loss is NaN', null),
    retried: false,
    exit: EXIT.jobFailed,
  },
  CheckpointError: {
    make: () => new CheckpointError('config differs', 'new run name'),
    retried: false,
    exit: EXIT.jobFailed,
  },
  FeatureExtractorError: {
    make: () => new FeatureExtractorError('no extractor.json', 'export it'),
    retried: false,
    exit: EXIT.jobFailed,
  },
  FeatureStatisticsError: {
    make: () => new FeatureStatisticsError('NaN features', 'check the model'),
    retried: false,
    exit: EXIT.jobFailed,
  },
  LineageSchemaError: {
    make: () => new LineageSchemaError(9, 3, '/data/lineage.db'),
    retried: false,
    exit: EXIT.jobFailed,
  },
  KilnError: {
    make: () => new KilnError('KILN_ROW_COUNT_MISMATCH', 'rows differ', 'report it'),
    retried: false,
    exit: EXIT.jobFailed,
  },
  TemporalUnavailableError: {
    make: () => new TemporalUnavailableError('no server', 'start one'),
    retried: true,
    exit: EXIT.temporalUnavailable,
  },
  LineageUnavailableError: {
    make: () => new LineageUnavailableError('PostgreSQL at 127.0.0.1:1 refused', 'start it'),
    retried: true,
    exit: EXIT.jobFailed,
  },
  LineageCopyError: {
    make: () => new LineageCopyError('target is not empty', 'copy into an empty database'),
    retried: false,
    exit: EXIT.jobFailed,
  },
  Error: { make: () => new Error('ECONNRESET: socket hang up'), retried: true, exit: EXIT.jobFailed },
};

/** Class names declared `extends <a KilnError class>` anywhere in the source tree. */
function kilnErrorClassesInSource(): string[] {
  const files: string[] = [];
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      if (['node_modules', 'dist', 'test', '.git', 'kiln-data'].includes(name) || name.startsWith('.')) continue;
      const p = join(dir, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (p.endsWith('.ts')) files.push(p);
    }
  };
  walk(PROJECT_ROOT);
  const extendsOf = new Map<string, string>();
  for (const f of files)
    for (const m of readFileSync(f, 'utf8').matchAll(/class (\w+) extends (\w+)/g)) extendsOf.set(m[1]!, m[2]!);
  const isKiln = (c: string | undefined): boolean =>
    c === 'KilnError' || (c !== undefined && c !== extendsOf.get(c) && isKiln(extendsOf.get(c)));
  return [...extendsOf.keys()].filter((c) => c !== 'KilnError' && isKiln(c)).sort();
}

describe('typed errors decide retries and exit codes', () => {
  let env: TestWorkflowEnvironment;
  let bundle: WorkflowBundleWithSourceMap;
  const attempts = new Map<string, number>();

  before(async () => {
    env = await TestWorkflowEnvironment.createLocal({
      server: { executable: { type: 'existing-path', path: temporalBinary() } },
    });
    bundle = await bundleTestWorkflows(new URL('./retry-workflow.js', import.meta.url));
  });
  after(async () => {
    await env?.teardown();
  });

  it('every KilnError class in the source has a row here', () => {
    const inSource = kilnErrorClassesInSource();
    assert.ok(
      inSource.includes('StaleDecoderSplitError') && inSource.length >= 15,
      `found only ${inSource.join(', ')}`,
    );
    assert.deepEqual(
      inSource.filter((c) => !(c in CASES)),
      [],
      'add a row to CASES for each new error class',
    );
  });

  it('outside an activity an error passes the wrapper unchanged', async () => {
    const acts = temporalFailures({
      async fails(): Promise<void> {
        throw new StaleDecoderSplitError('/m', 'x');
      },
    });
    await assert.rejects(
      acts.fails(),
      (err: unknown) => err instanceof StaleDecoderSplitError && err instanceof ConfigError,
    );
  });

  it('each class through a real worker: retried or not, its failure type and code, its exit code', async () => {
    const worker = await Worker.create({
      connection: env.nativeConnection,
      taskQueue: 'errors-retry',
      workflowBundle: bundle,
      activities: temporalFailures({
        async throwError(name: string): Promise<void> {
          attempts.set(name, (attempts.get(name) ?? 0) + 1);
          throw CASES[name]!.make();
        },
      }),
    });
    await worker.runUntil(async () => {
      for (const [name, c] of Object.entries(CASES)) {
        const thrown = c.make();
        assert.equal(exitCodeOf(thrown), c.exit, `${name} thrown in the CLI: exit code`);
        if (thrown instanceof KilnError) assert.equal(thrown.retryable, c.retried, `${name}.retryable`);
        let failure: unknown;
        try {
          await env.client.workflow.execute('throwingStageWorkflow', {
            taskQueue: 'errors-retry',
            workflowId: uniqueId(`err-${name}`),
            args: [name],
          });
        } catch (err) {
          failure = err;
        }
        assert.ok(failure instanceof WorkflowFailedError, `${name}: the workflow fails`);
        assert.equal(
          attempts.get(name),
          c.retried ? 3 : 1,
          `${name}: ${c.retried ? 'retried up to maximumAttempts' : 'not retried'}`,
        );
        assert.ok(failure.cause instanceof ActivityFailure);
        const app = failure.cause.cause;
        assert.ok(app instanceof ApplicationFailure, `${name}: an application failure`);
        assert.equal(app.type, name, `${name}: the failure type is the class name`);
        assert.equal(app.nonRetryable, !c.retried, `${name}: nonRetryable`);
        assert.match(app.message, name === 'Error' ? /socket hang up/ : /\nFix: /);
        if (thrown instanceof KilnError)
          assert.deepEqual(
            app.details?.[0],
            { code: thrown.code, fix: thrown.fix },
            `${name}: code and fix travel with the failure`,
          );
        assert.equal(exitCodeOf(failure), c.exit, `${name}: the failed job's exit code`);
      }
    });
  });
});
