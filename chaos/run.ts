/**
 * `npm run chaos` / `node dist/chaos/run.js [--short] [--trials N] [--stage crawl|filter|train|server|inputs|paths|disk|multi] [--json]`
 *
 * Runs chaos trials (kill -9 workers mid-stage, restart Temporal, bad inputs, escaping names, full
 * and unwritable data roots), checks the invariants after each, prints a table, and exits 1 when
 * any trial FAILs. Full form: 20 kill trials per stage; --short: 2 per stage (CI).
 */
import { pathToFileURL } from 'node:url';
import { installRuntime } from '../infra/temporal/worker.js';
import { activityKillTrial, killTrial, serverRestartTrial } from './pipeline-trials.js';
import { inputTrials } from './input-trials.js';
import { bigListTrial, planKillTrial } from './plan-trials.js';
import { pathTrials, diskTrials } from './path-trials.js';
import { nativeCrashTrial } from './native-crash-trial.js';
import { MULTI_FULL, MULTI_SHORT, multiMachineTrial } from './multi-machine-trial.js';
import { cliKillTrial } from './cli-kill-trials.js';
import type { ChaosStage, TrialResult, TrialSpec } from './types.js';

export interface ChaosOptions {
  short: boolean;
  trials?: number;
  stages?: ChaosStage[];
  /** Keep only trials whose name starts with one of these (e.g. `crawl-kill#1`, `path-`). */
  only?: string[];
  log?: (line: string) => void;
}

/** The trial list for the options (kill trials per stage: --trials, else 2 short / 20 full). */
export function planTrials(o: ChaosOptions): TrialSpec[] {
  const n = o.trials ?? (o.short ? 2 : 20);
  const want = (s: ChaosStage) => !o.stages?.length || o.stages.includes(s);
  // Weights are compared with an uninterrupted run on the same dataset version, in the trial's own sandbox.
  const reference = async () => undefined;
  const out: TrialSpec[] = [];
  for (const stage of ['crawl', 'filter', 'train'] as const) {
    if (want(stage))
      for (let i = 1; i <= n; i++) out.push(killTrial(stage, i, stage === 'train' ? 7 : 100 + i, reference));
  }
  // kill -9 of `kiln run spec.yaml` itself (embedded server + worker), then the same command again (issue 19)
  for (const stage of ['crawl', 'filter', 'train'] as const) {
    if (want(stage))
      for (let i = 1; i <= (o.trials ?? (o.short ? 1 : 5)); i++) out.push(cliKillTrial(stage, i, 300 + i));
  }
  // kill -9 while the filter plans (loads the model, lists shards): retried within 3 minutes?
  if (want('filter')) out.push(activityKillTrial('filter', 'planFilter', 1, 101, 180));
  // one image aborts the worker process in the native JPEG addon (test-only switch): the shard is retried with sharp
  if (want('crawl')) for (let i = 1; i <= (o.short ? 1 : Math.min(n, 3)); i++) out.push(nativeCrashTrial(i, 200 + i));
  // kill -9 during crawl planning (each waits out the 1-minute planning heartbeat timeout)
  if (want('crawl'))
    for (let i = 1; i <= (o.short ? 1 : Math.min(n, 3)); i++)
      out.push(planKillTrial(i, o.short ? 20_000 : 100_000, o.short ? 1_000 : 5_000));
  if (want('server'))
    for (let i = 1; i <= Math.max(1, Math.min(n, o.short ? 1 : 4)); i++) out.push(serverRestartTrial(i, 7, reference));
  if (want('inputs')) out.push(...inputTrials(), bigListTrial(o.short ? 20_000 : 1_000_000));
  if (want('paths')) out.push(...pathTrials());
  if (want('disk')) out.push(...diskTrials());
  // two workers sharing only Temporal, S3 (moto) and PostgreSQL; kill -9 of one mid-crawl, the other mid-training
  if (want('multi')) out.push(multiMachineTrial(o.short ? MULTI_SHORT : MULTI_FULL));
  return o.only?.length ? out.filter((t) => o.only!.some((p) => t.name.startsWith(p))) : out;
}

/** Run trials one after another (each owns its sandbox); a trial that throws is a FAIL. */
export async function runChaos(o: ChaosOptions): Promise<TrialResult[]> {
  installRuntime();
  const log = o.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const results: TrialResult[] = [];
  for (const t of planTrials(o)) {
    const t0 = Date.now();
    let r: Omit<TrialResult, 'trial' | 'seconds'>;
    try {
      r = await t.run();
    } catch (err) {
      r = {
        action: '(trial crashed)',
        outcome: 'FAIL',
        detail: String((err as Error).stack ?? err)
          .split('\n')
          .slice(0, 2)
          .join(' '),
      };
    }
    const res = { trial: t.name, ...r, seconds: Math.round((Date.now() - t0) / 100) / 10 };
    results.push(res);
    log(`${res.outcome.padEnd(4)} ${res.trial} (${res.seconds} s): ${res.action} -> ${res.detail}`);
  }
  return results;
}

/** Markdown table of results. */
export function formatTable(results: TrialResult[]): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
  const lines = ['| trial | what was done | outcome | detail | s |', '| --- | --- | --- | --- | --- |'];
  for (const r of results)
    lines.push(`| ${r.trial} | ${esc(r.action)} | ${r.outcome} | ${esc(r.detail)} | ${r.seconds} |`);
  const count = (o: string) => results.filter((r) => r.outcome === o).length;
  lines.push('', `${results.length} trials: ${count('PASS')} PASS, ${count('FAIL')} FAIL, ${count('SKIP')} SKIP`);
  return lines.join('\n');
}

function parseArgs(argv: string[]): ChaosOptions & { json: boolean } {
  const o: ChaosOptions & { json: boolean } = { short: false, stages: [], json: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--short') o.short = true;
    else if (a === '--json') o.json = true;
    else if (a === '--trials') o.trials = Number(argv[++i]);
    else if (a === '--only') (o.only ??= []).push(...String(argv[++i]).split(','));
    else if (a === '--stage') o.stages!.push(...(String(argv[++i]).split(',') as ChaosStage[]));
    else {
      process.stderr.write(
        `chaos: unknown argument ${a}\nFix: use [--short] [--trials N] ` +
          '[--stage crawl|filter|train|server|inputs|paths|disk|multi] [--only name-prefix,...] [--json]\n',
      );
      process.exit(2);
    }
  }
  if (o.trials !== undefined && !(Number.isInteger(o.trials) && o.trials > 0)) {
    process.stderr.write('chaos: --trials must be a positive integer\nFix: pass e.g. --trials 5\n');
    process.exit(2);
  }
  return o;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const o = parseArgs(process.argv.slice(2));
  const started = new Date().toISOString();
  const results = await runChaos(o);
  process.stdout.write(o.json ? `${JSON.stringify({ started, results })}\n` : `\n${formatTable(results)}\n`);
  process.exitCode = results.some((r) => r.outcome === 'FAIL') ? 1 : 0;
  // Temporal's native runtime keeps the loop alive; everything this run started is stopped.
  setTimeout(() => process.exit(process.exitCode as number), 500).unref();
}
