/**
 * Issue 19's trial, what a user does: `kill -9` of the `kiln run spec.yaml` process itself (its
 * embedded Temporal server and in-process worker die with it) mid-crawl, mid-filter or
 * mid-training, then the same command again. PASS: the rerun exits 0 with the same job id, every
 * row is in the output exactly once, no second dataset version was made, training ended at
 * total_steps with weights byte-identical to an uninterrupted run's on the same dataset version,
 * and no workflow is left running (`kiln status`).
 */
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { PROJECT_ROOT } from '../infra/config.js';
import { LineageStore } from '../infra/lineage/store.js';
import { startSyntheticWeb } from '../demo/synthetic-web.js';
import { isPortOpen } from '../infra/temporal/server.js';
import { KILN_BIN, kiln, sleep, until, type CliResult } from './harness.js';
import { cliSandbox, firstError } from './cli-trial.js';
import { checkDataset, checkLineage, checkNoPartialFiles, expectedKeys } from './checks.js';
import { verdict, type TrialResult, type TrialSpec } from './types.js';

type Stage = 'crawl' | 'filter' | 'train';
const SHAPE = {
  crawl: { count: 60, rowsPerShard: 6 },
  filter: { count: 40, rowsPerShard: 10 },
  train: { count: 24, rowsPerShard: 12 },
} as const;
const TRAIN = { total: 8, chunk: 2, config: { resolution: 16, optim: { lr: 1e-3 }, runtime: { backend: 'wasm' } } };

function specOf(stage: Stage): Record<string, unknown> {
  const s = SHAPE[stage];
  return {
    version: 1,
    name: 'chaos',
    sources: [{ path: 'urls.csv' }],
    crawl: {
      rows_per_shard: s.rowsPerShard,
      image_size: 16,
      resize_mode: 'center_crop',
      timeout_ms: 5000,
      allow_addresses: ['127.0.0.1'],
    },
    ...(stage !== 'crawl'
      ? { filter: { clip_model: join(PROJECT_ROOT, 'fixtures', 'models', 'clip-tiny'), keep_top_fraction: 0.75 } }
      : {}),
    ...(stage === 'train'
      ? { train: { run_name: 'chaos-run', total_steps: TRAIN.total, chunk_steps: TRAIN.chunk, config: TRAIN.config } }
      : {}),
  };
}

const files = (dir: string) => (existsSync(dir) ? readdirSync(dir) : []);

/** The moment to kill: the stage is under way (its first output exists) but not done. */
function stageUnderWay(dataRoot: string, stage: Stage): boolean {
  const ds = join(dataRoot, 'datasets', 'chaos');
  if (stage === 'crawl') return files(join(ds, 'v1', 'shards')).some((f) => f.endsWith('.parquet'));
  if (stage === 'filter')
    return (
      files(join(ds, 'v2', 'shards')).some((f) => f.endsWith('.parquet')) || existsSync(join(ds, 'v2', 'plan.json'))
    );
  return (
    files(join(dataRoot, 'runs', 'chaos-run')).some((f) => f.startsWith('step-')) ||
    files(join(dataRoot, 'runs', 'chaos-run', 'checkpoints')).length > 0
  );
}

/** Start `kiln run spec --json`, kill -9 it `extraMs` after the stage is under way; how it ended. */
async function runAndKill(
  env: Record<string, string>,
  spec: string,
  stage: Stage,
  extraMs: number,
  limitMs: number,
): Promise<{ killed: boolean; stderr: string }> {
  const p = spawn(process.execPath, [KILN_BIN, 'run', spec, '--json'], {
    env: { ...process.env, KILN_LOG_LEVEL: 'ERROR', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  p.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<void>((r) => p.once('exit', () => r()));
  let done = false;
  void exited.then(() => {
    done = true;
  });
  const t0 = Date.now();
  while (!done && !stageUnderWay(env.KILN_DATA_ROOT!, stage) && Date.now() - t0 < limitMs) await sleep(100);
  if (!done) await sleep(extraMs);
  const killed = !done;
  if (killed) p.kill('SIGKILL');
  await exited;
  return { killed, stderr };
}

/** Final checkpoint sha256s (model, EMA, optimizer; state.json names run paths) from a pipeline / train result. */
function weights(result: unknown): Record<string, string> | undefined {
  const fc = (result as { finalCheckpoint?: { step: number; sha256s: Record<string, string> } } | undefined)
    ?.finalCheckpoint;
  return fc ? Object.fromEntries(Object.entries(fc.sha256s).filter(([n]) => n !== 'state.json')) : undefined;
}

type StageOut = { stage: string; status: string; result: Record<string, unknown> };

export function cliKillTrial(stage: Stage, index: number, seed: number): TrialSpec {
  return {
    name: `cli-kill-${stage}#${index}`,
    stage,
    run: async () => {
      const sb = await cliSandbox('kiln-chaos-clikill-');
      const web = await startSyntheticWeb({ count: SHAPE[stage].count, seed, faultEvery: 8 });
      // A FAIL keeps the sandbox (data root with the embedded server's history database, both runs' output).
      const log = (file: string, text: string) => writeFileSync(join(sb.dir, file), text);
      let kept = false;
      try {
        const r = await trial();
        if (r.outcome === 'FAIL') {
          kept = true;
          return { ...r, detail: `${r.detail} (kept for diagnosis: ${sb.dir})` };
        }
        return r;
      } catch (err) {
        kept = true;
        log('trial-error.txt', String((err as Error).stack ?? err));
        throw err;
      } finally {
        await web.close();
        if (!kept) sb.cleanup();
      }

      async function trial(): Promise<Omit<TrialResult, 'trial' | 'seconds'>> {
        writeFileSync(join(sb.dir, 'urls.csv'), web.urlListCsv());
        const spec = join(sb.dir, 'spec.yaml');
        writeFileSync(spec, stringify(specOf(stage)));
        const extraMs = Math.floor(Math.random() * (stage === 'train' ? 1500 : 400));
        const first = await runAndKill(sb.env, spec, stage, extraMs, 240_000);
        log('first.stderr', first.stderr);
        const jobId = /started pipeline job (\S+)/.exec(first.stderr)?.[1];
        if (!first.killed)
          return {
            action: `kill -9 kiln run in ${stage}`,
            outcome: 'FAIL',
            detail: `the run ended before the kill: ${first.stderr.slice(-200)}`,
          };
        const action = `kill -9 of kiln run ${extraMs} ms after ${stage} was under way, then the same command again`;
        // The embedded server dies with the CLI (its watchdog); the rerun starts it again on the same database.
        await until('embedded server gone', async () => !(await isPortOpen(sb.env.TEMPORAL_ADDRESS!, 300)), 20_000);
        const t0 = Date.now();
        // The rerun logs the worker's warnings too (failed activity attempts): kept with a FAIL.
        const again: CliResult = await kiln(['run', spec, '--json'], { ...sb.env, KILN_LOG_LEVEL: 'WARN' }, 600_000);
        const rerunS = Math.round((Date.now() - t0) / 1000);
        log('rerun.stderr', again.stderr);
        log('rerun.stdout', again.stdout);
        if (again.status !== 0) {
          const why = again.stderr
            .split('\n')
            .filter((l) => /^kiln: .* failed: |^Fix: /.test(l))
            .join(' | ');
          return {
            action,
            outcome: 'FAIL',
            detail: `rerun exit ${again.status}: ${why || firstError(again)}`.slice(0, 600),
          };
        }
        const out = JSON.parse(again.stdout.trim().split('\n').pop()!) as {
          workflowId: string;
          result: { stages: StageOut[] };
        };
        const problems: string[] = [];
        if (out.workflowId !== jobId) problems.push(`rerun ran job ${out.workflowId}, the killed one was ${jobId}`);
        if (!/already running; attached/.test(again.stderr))
          problems.push(`rerun did not attach to the running job: ${firstError(again)}`);
        const keys = expectedKeys(SHAPE[stage].count, SHAPE[stage].rowsPerShard);
        const byStage = Object.fromEntries(out.result.stages.map((s) => [s.stage, s]));
        const crawl = byStage.crawl!.result as { version: number };
        problems.push(...(await checkDataset(sb.dataRoot, 'chaos', crawl.version, keys)).problems);
        const filter = byStage.filter?.result as { version: number } | undefined;
        if (filter) problems.push(...(await checkDataset(sb.dataRoot, 'chaos', filter.version, keys)).problems);
        const store = new LineageStore(join(sb.dataRoot, 'lineage.db'));
        const versions = store.datasetVersions('chaos').map((d) => d.version);
        store.close();
        const want = stage === 'crawl' ? [1] : [1, 2];
        if (versions.join() !== want.join())
          problems.push(`dataset versions ${versions.join(',')}, want ${want.join(',')} (no second version)`);
        const orphans = /retrying (\d+) activity attempt/.exec(again.stderr)?.[1];
        const notes = [`rerun ${rerunS} s${orphans ? `, ${orphans} dead attempt(s) retried at once` : ''}`];
        if (stage === 'train') {
          const got = weights(byStage.train?.result);
          const fc = (byStage.train?.result as { finalCheckpoint?: { step: number } }).finalCheckpoint;
          if (fc?.step !== TRAIN.total) problems.push(`final checkpoint at step ${fc?.step}, want ${TRAIN.total}`);
          // An uninterrupted run on the same dataset version, through the CLI.
          const cfg = join(sb.dir, 'train.json');
          writeFileSync(cfg, JSON.stringify(TRAIN.config));
          const ref = await kiln(
            [
              'run',
              'train',
              '--dataset',
              'chaos@v2',
              '--run-name',
              'reference',
              '--total-steps',
              String(TRAIN.total),
              '--chunk-steps',
              String(TRAIN.chunk),
              '--config',
              cfg,
              '--json',
            ],
            sb.env,
            600_000,
          );
          const refW =
            ref.status === 0
              ? weights((JSON.parse(ref.stdout.trim().split('\n').pop()!) as { result: unknown }).result)
              : undefined;
          if (!refW || !got) problems.push(`reference run: exit ${ref.status} ${firstError(ref)}`);
          else
            for (const [n, sha] of Object.entries(refW))
              if (got[n] !== sha)
                problems.push(`final ${n} ${got[n]?.slice(0, 12)} != uninterrupted ${sha.slice(0, 12)}`);
          if (refW && got) notes.push('weights byte-identical to an uninterrupted run');
        }
        // No workflow left running.
        const st = await kiln(['status', '--json', '--limit', '100'], sb.env, 120_000);
        const running =
          st.status === 0
            ? (JSON.parse(st.stdout) as { workflowId: string; status: string }[]).filter((r) => r.status === 'RUNNING')
            : null;
        if (!running) problems.push(`kiln status failed: ${firstError(st)}`);
        else if (running.length) problems.push(`left running: ${running.map((r) => r.workflowId).join(', ')}`);
        const partial = await checkNoPartialFiles(sb.dataRoot);
        problems.push(...partial.problems, ...checkLineage(sb.dataRoot));
        return verdict(action, problems, notes.join('; '));
      }
    },
  };
}
