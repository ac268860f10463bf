/**
 * Names and paths that try to escape the data root (`../`, absolute paths, NUL bytes) given as
 * dataset names and references, run names, spec fields, workflow and schedule ids, and the shard keys
 * (shard / stats paths) of a tampered dataset manifest, through the real CLI: each must be
 * refused with exit code 2 and a "Fix:", and nothing may appear outside the data root.
 * Plus the disk trials: a full disk (2 MiB tmpfs data root; SKIP when mount is not permitted) and
 * an unwritable data root: a read-only tmpfs (EROFS) and a path component that is a regular file
 * (ENOTDIR); both bind root too (plain permission bits do not).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { PROJECT_ROOT, loadConfig } from '../infra/config.js';
import { startDevServer } from '../infra/temporal/server.js';
import { startSyntheticWeb } from '../demo/synthetic-web.js';
import { checkFix, checkLineage, checkNoPartialFiles, walk } from './checks.js';
import { cliSandbox, crawlSpec, firstError, runSpec, type CliSandbox } from './cli-trial.js';
import { freePort, kiln, type CliResult } from './harness.js';
import type { TrialSpec } from './types.js';
import { verdict } from './types.js';

const CLIP = join(PROJECT_ROOT, 'fixtures', 'models', 'clip-tiny');

/** Files outside the data root: everything under the sandbox dir except <dir>/root/data. */
function outside(sb: CliSandbox): string[] {
  return walk(sb.dir).filter((f) => !f.startsWith('root/data/'));
}

function escapeTrial(
  name: string,
  action: string,
  run: (sb: CliSandbox, evil: string) => Promise<CliResult>,
): TrialSpec {
  return {
    name: `path-${name}`,
    stage: 'paths',
    run: async () => {
      const sb = await cliSandbox('kiln-chaos-path-');
      const evilAbs = `${sb.dir}/abs-evil`;
      try {
        mkdirSync(sb.dataRoot, { recursive: true });
        writeFileSync(join(sb.dir, 'urls.csv'), 'url,caption\nhttp://127.0.0.1:1/a.jpg,a\n');
        const before = outside(sb);
        const r = await run(sb, evilAbs);
        const after = outside(sb).filter((f) => !before.includes(f) && !/^spec\.(yaml|json)$/.test(f));
        const problems: string[] = [];
        if (r.timedOut) problems.push('no answer within the time limit');
        else if (r.status !== 2) problems.push(`exit ${r.status}, want 2 (usage): ${firstError(r)}`);
        problems.push(...checkFix(r.stderr, 'refusal'));
        if (after.length) problems.push(`written outside the data root: ${after.slice(0, 3).join(', ')}`);
        if (existsSync(evilAbs)) problems.push(`${evilAbs} was created`);
        return verdict(action, problems, `exit ${r.status}: ${firstError(r)}`);
      } finally {
        sb.cleanup();
      }
    },
  };
}

/**
 * A dataset manifest in the data root whose shard keys (shard and stats paths) were tampered with
 * to point outside the version directory; returns the dataset name to pass to filter / train.
 */
function tamperedManifest(sb: CliSandbox, shardPath: string): string {
  const dir = join(sb.dataRoot, 'datasets', 'tampered', 'v1');
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, 'manifest.json'),
    JSON.stringify({
      id: 'tampered@v1',
      name: 'tampered',
      version: 1,
      parents: [],
      schemaVersion: 1,
      stage: 'crawl',
      params: {},
      createdAt: new Date().toISOString(),
      rows: 1,
      shards: [
        {
          index: 0,
          path: shardPath,
          rows: 1,
          sha256: '0'.repeat(64),
          bytes: 10,
          stats: shardPath.replace(/\.parquet$/, '.stats.json'),
        },
      ],
    }),
  );
  return 'tampered';
}

export function pathTrials(): TrialSpec[] {
  const spec = (o: Record<string, unknown>) => crawlSpec('urls.csv', {}, o);
  return [
    escapeTrial('spec-name-dotdot', 'spec name "../../evil"', (sb) =>
      runSpec(sb, { ...spec({}), name: '../../evil' }, 60_000),
    ),
    escapeTrial('spec-name-absolute', 'spec name = an absolute path', (sb, abs) =>
      runSpec(sb, { ...spec({}), name: abs }, 60_000),
    ),
    escapeTrial('spec-name-nul', 'spec name with a NUL byte (JSON spec)', (sb) =>
      runSpec(sb, { ...spec({}), name: 'ok\u0000../../evil' }, 60_000, 'spec.json'),
    ),
    escapeTrial('spec-run-name-dotdot', 'spec train.run_name "../../../evil"', (sb) =>
      runSpec(sb, spec({ train: { run_name: '../../../evil', total_steps: 2, chunk_steps: 2 } }), 60_000),
    ),
    escapeTrial('spec-source-nul', 'spec source path with a NUL byte (JSON spec)', (sb) =>
      runSpec(sb, { ...spec({}), sources: [{ path: 'urls.csv\u0000/../../evil' }] }, 60_000, 'spec.json'),
    ),
    escapeTrial('filter-dataset-dotdot', 'kiln run filter --dataset ../../evil', (sb) =>
      kiln(['run', 'filter', '--dataset', '../../evil', '--from-version', '1', '--clip-model', CLIP], sb.env, 90_000),
    ),
    escapeTrial('filter-dataset-absolute', 'kiln run filter --dataset <absolute path>', (sb, abs) =>
      kiln(['run', 'filter', '--dataset', abs, '--from-version', '1', '--clip-model', CLIP], sb.env, 90_000),
    ),
    escapeTrial('train-run-name-dotdot', 'kiln run train --run-name ../../evil', (sb) =>
      kiln(['run', 'train', '--dataset', 'x@v1', '--run-name', '../../evil', '--total-steps', '2'], sb.env, 90_000),
    ),
    escapeTrial('train-run-name-absolute', 'kiln run train --run-name <absolute path>', (sb, abs) =>
      kiln(['run', 'train', '--dataset', 'x@v1', '--run-name', abs, '--total-steps', '2'], sb.env, 90_000),
    ),
    escapeTrial('workflow-id-dotdot', 'kiln run hello --id ../../evil', (sb) =>
      kiln(['run', 'hello', '--id', '../../evil'], sb.env, 90_000),
    ),
    escapeTrial('train-dataset-dotdot', 'kiln run train --dataset ../../evil@v1', (sb) =>
      kiln(['run', 'train', '--dataset', '../../evil@v1', '--run-name', 'ok', '--total-steps', '2'], sb.env, 90_000),
    ),
    escapeTrial('schedule-id-dotdot', 'kiln schedule create spec.yaml --id ../../evil', async (sb) => {
      writeFileSync(join(sb.dir, 'spec.yaml'), stringify(spec({})));
      return kiln(
        ['schedule', 'create', join(sb.dir, 'spec.yaml'), '--id', '../../evil', '--every', '1d'],
        sb.env,
        60_000,
      );
    }),
    escapeTrial(
      'manifest-shard-dotdot',
      'filter a dataset whose manifest shard key is ../../../../evil.parquet',
      (sb) =>
        kiln(
          [
            'run',
            'filter',
            '--dataset',
            tamperedManifest(sb, '../../../../evil.parquet'),
            '--from-version',
            '1',
            '--clip-model',
            CLIP,
          ],
          sb.env,
          90_000,
        ),
    ),
    escapeTrial(
      'manifest-shard-absolute',
      'train on a dataset whose manifest shard key is an absolute path',
      (sb, abs) =>
        kiln(
          [
            'run',
            'train',
            '--dataset',
            `${tamperedManifest(sb, `${abs}.parquet`)}@v1`,
            '--run-name',
            'ok',
            '--total-steps',
            '2',
          ],
          sb.env,
          90_000,
        ),
    ),
    escapeTrial('manifest-shard-nul', 'filter a dataset whose manifest shard key holds a NUL byte', (sb) =>
      kiln(
        [
          'run',
          'filter',
          '--dataset',
          tamperedManifest(sb, 'shards/ok.parquet\u0000/../../../../evil'),
          '--from-version',
          '1',
          '--clip-model',
          CLIP,
        ],
        sb.env,
        90_000,
      ),
    ),
    escapeTrial('workflow-id-absolute', 'kiln run hello --id <absolute path>', (sb, abs) =>
      kiln(['run', 'hello', '--id', abs], sb.env, 90_000),
    ),
  ];
}

export function diskTrials(): TrialSpec[] {
  return [
    {
      name: 'disk-full-tmpfs',
      stage: 'disk',
      run: async () => {
        const sb = await cliSandbox('kiln-chaos-disk-');
        const action = 'data root on a 2 MiB tmpfs; crawl 200 images upscaled to 1024 px, JPEG q100';
        mkdirSync(sb.dataRoot, { recursive: true });
        const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', sb.dataRoot], { encoding: 'utf8' });
        if (m.status !== 0) {
          sb.cleanup();
          return {
            action,
            outcome: 'SKIP' as const,
            detail: `mount not permitted: ${(m.stderr || m.error?.message || '').trim().slice(0, 120)}`,
          };
        }
        // Temporal's own SQLite lives outside the tiny disk: this trial fills Kiln's artifacts, not Temporal's.
        const server = await startDevServer({
          address: `127.0.0.1:${await freePort()}`,
          namespace: 'default',
          dataRoot: join(sb.dir, 'srv'),
        });
        const web = await startSyntheticWeb({ count: 200, seed: 9, faultEvery: 0 });
        try {
          writeFileSync(join(sb.dir, 'urls.csv'), web.urlListCsv());
          const r = await runSpec(
            { ...sb, env: { ...sb.env, TEMPORAL_ADDRESS: server.address } },
            crawlSpec('urls.csv', { image_size: 1024, resize_mode: 'border', encode_quality: 100, rows_per_shard: 50 }),
            180_000,
          );
          const partial = await checkNoPartialFiles(sb.dataRoot);
          const problems: string[] = [...partial.problems];
          if (r.timedOut) problems.push(`no answer within 180 s (retrying ENOSPC forever?): ${firstError(r)}`);
          else if (r.status === 0) problems.push('completed on a 2 MiB disk (did not fill?)');
          else {
            // Whichever write hits the full disk first: a file (ENOSPC) or lineage.db (SQLITE_FULL: "database or disk is full").
            if (!/ENOSPC|no space|disk is full/i.test(r.stderr))
              problems.push(`error does not name the full disk: ${r.stderr.replace(/\s+/g, ' ').slice(-300)}`);
            problems.push(...checkFix(r.stderr, `exit ${r.status}`));
          }
          try {
            problems.push(...checkLineage(sb.dataRoot));
          } catch (err) {
            problems.push(`lineage unreadable after ENOSPC: ${(err as Error).message.slice(0, 100)}`);
          }
          return verdict(action, problems, `exit ${r.status}: ${firstError(r)}`);
        } finally {
          await web.close();
          await server.stop();
          spawnSync('umount', [sb.dataRoot]);
          sb.cleanup();
        }
      },
    },
    {
      name: 'disk-readonly-root',
      stage: 'disk',
      run: async () => {
        const sb = await cliSandbox('kiln-chaos-rofs-');
        const action = 'KILN_DATA_ROOT on a read-only tmpfs (EROFS: root cannot write either)';
        mkdirSync(sb.dataRoot, { recursive: true });
        const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', sb.dataRoot], { encoding: 'utf8' });
        if (m.status !== 0) {
          sb.cleanup();
          return {
            action,
            outcome: 'SKIP' as const,
            detail: `mount not permitted: ${(m.stderr || m.error?.message || '').trim().slice(0, 120)}`,
          };
        }
        try {
          writeFileSync(join(sb.dir, 'urls.csv'), 'url,caption\nhttp://127.0.0.1:1/a.jpg,a\n');
          const r = await runSpec(sb, crawlSpec('urls.csv'), 90_000);
          const problems: string[] = [];
          if (r.timedOut) problems.push('no answer within 90 s');
          else if (r.status !== 2) problems.push(`exit ${r.status}, want 2 (configuration)`);
          if (!/read-only|EROFS/i.test(r.stderr))
            problems.push(`error does not name the read-only data root: ${firstError(r)}`);
          problems.push(...checkFix(r.stderr, 'error'));
          return verdict(action, problems, `exit ${r.status}: ${firstError(r)}`);
        } finally {
          spawnSync('umount', [sb.dataRoot]);
          sb.cleanup();
        }
      },
    },
    {
      name: 'disk-unwritable-root',
      stage: 'disk',
      run: async () => {
        const sb = await cliSandbox('kiln-chaos-enotdir-');
        try {
          writeFileSync(join(sb.dir, 'afile'), 'a regular file, not a directory');
          writeFileSync(join(sb.dir, 'urls.csv'), 'url,caption\nhttp://127.0.0.1:1/a.jpg,a\n');
          const root = join(sb.dir, 'afile', 'data');
          const action = 'KILN_DATA_ROOT=<regular file>/data (ENOTDIR)';
          const r = await runSpec(
            { ...sb, env: { ...sb.env, KILN_DATA_ROOT: loadConfig({ dataRoot: root }, {}).dataRoot } },
            crawlSpec('urls.csv'),
            90_000,
          );
          const problems: string[] = [];
          if (r.timedOut) problems.push('no answer within 90 s');
          else if (r.status !== 2) problems.push(`exit ${r.status}, want 2 (configuration)`);
          if (!/not a directory|ENOTDIR/i.test(r.stderr))
            problems.push(`error does not name the problem: ${firstError(r)}`);
          problems.push(...checkFix(r.stderr, 'error'));
          return verdict(action, problems, `exit ${r.status}: ${firstError(r)}`);
        } finally {
          sb.cleanup();
        }
      },
    },
  ];
}
