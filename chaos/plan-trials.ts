/**
 * Crawl planning at scale: a big URL list (URLs to a refused port on 64 loopback addresses, so
 * each fetch fails at once and never leaves 127.0.0.0/8).
 * - `input-<N>-urls`: `kiln run spec.yaml` on an N-row list; every row must come out exactly once
 *   with a status; reports planning time (lineage run `crawl.plan`), crawl time and the CLI
 *   process's peak RSS (CLI + embedded worker), and fails when that exceeds RSS_LIMIT_MIB.
 * - `crawl-plan-kill#i`: kill -9 the worker while planning splits the list into input shards; the
 *   planning activity heartbeats every few thousand rows with a 1-minute heartbeat timeout, so its
 *   retry must start within REPLAN_LIMIT_S (it was 5 minutes) and the crawl must complete with every row once.
 */
import { createWriteStream, existsSync, readdirSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { WORKFLOW_TASK_QUEUE } from '../infra/constants.js';
import { LocalStorage } from '../infra/storage.js';
import { LineageStore } from '../infra/lineage/store.js';
import { DatasetLayout } from '../datasets/shards/layout.js';
import { loadSpec } from '../cli/spec/load.js';
import { pipelineInputFromSpec } from '../cli/spec/to-input.js';
import type { PipelineResult } from '../workflows/pipeline.js';
import { checkDataset, checkLineage, checkNoPartialFiles, expectedKeys } from './checks.js';
import { cliSandbox, crawlResultOf, crawlSpec, firstError, runSpec } from './cli-trial.js';
import { inSandbox, resultWithin } from './pipeline-trials.js';
import { peakRssKiB, sleep } from './harness.js';
import type { TrialSpec } from './types.js';
import { verdict } from './types.js';

/** Peak RSS allowed for the CLI process (CLI + embedded worker) planning and crawling a big list. */
export const RSS_LIMIT_MIB = 2048;
/** A killed planning attempt must be retried and finished within this many seconds of the kill. */
export const REPLAN_LIMIT_S = 150;
const HOSTS = 64;

/** Write an N-row `url,caption` CSV (streamed) whose URLs hit a closed port on 127.0.0.1-64. */
export async function writeBigList(path: string, rows: number): Promise<void> {
  const out = createWriteStream(path);
  out.write('url,caption\n');
  let buf: string[] = [];
  for (let i = 0; i < rows; i++) {
    buf.push(`http://127.0.0.${1 + (i % HOSTS)}:1/img/${i}.jpg,caption ${i}`);
    if (buf.length === 10_000 || i === rows - 1) {
      if (!out.write(`${buf.join('\n')}\n`)) await once(out, 'drain');
      buf = [];
    }
  }
  out.end();
  await once(out, 'finish');
}

const BIG_CRAWL = { concurrency: 256, allow_addresses: ['127.0.0.0/24'], timeout_ms: 3000, retries: 0 };

/** The messages of an error and its causes (Temporal wraps the root failure several levels deep). */
export function causeChain(err: unknown): string {
  const parts: string[] = [];
  for (let e = err as { message?: string; cause?: unknown } | undefined; e && parts.length < 6; e = e.cause as typeof e)
    parts.push(String(e.message ?? e).split('\n')[0]!);
  return parts.join(' <- ').slice(0, 400);
}

/** Seconds between a lineage run's start and finish. */
function runSeconds(run: { startedAt: string; finishedAt: string | null }): number | undefined {
  return run.finishedAt ? Math.round((Date.parse(run.finishedAt) - Date.parse(run.startedAt)) / 100) / 10 : undefined;
}

/** Planning and crawl seconds of the (only) crawl job in a data root, from lineage. */
function crawlTimings(dataRoot: string): { planS?: number; crawlS?: number } {
  const store = new LineageStore(join(dataRoot, 'lineage.db'));
  try {
    const runs = store.allRuns();
    const plan = runs.find((r) => r.stage === 'crawl.plan');
    const manifest = runs.find((r) => r.stage === 'crawl.manifest');
    const crawlS =
      plan && manifest?.finishedAt
        ? Math.round((Date.parse(manifest.finishedAt) - Date.parse(plan.startedAt)) / 100) / 10
        : undefined;
    return { planS: plan ? runSeconds(plan) : undefined, crawlS };
  } finally {
    store.close();
  }
}

/** `kiln run spec.yaml` over an N-row list: completes, every row once with a status; timings and peak RSS reported. */
export function bigListTrial(rows: number): TrialSpec {
  return {
    name: `input-${rows}-urls`,
    stage: 'inputs',
    run: async () => {
      const sb = await cliSandbox();
      try {
        const rps = rows >= 200_000 ? 10_000 : 5_000; // 10,000: the product default
        await writeBigList(join(sb.dir, 'urls.csv'), rows);
        const action =
          `${rows.toLocaleString('en')}-row URL list to a closed port on ${HOSTS} loopback addresses ` +
          `(kiln run, ${rps.toLocaleString('en')} rows/shard)`;
        const limitMs = Math.max(240_000, rows * 4); // 4 ms a row: far above the crawl's pace, so only a hang hits it
        // The peak RSS so far when plan.json appears: what planning took (the crawl's own peak comes later).
        const planPath = new LocalStorage(sb.dataRoot).localPath(
          new DatasetLayout(new LocalStorage(sb.dataRoot), 'chaos', 1).planUri,
        );
        let planRss: number | undefined;
        const r = await runSpec(
          sb,
          crawlSpec('urls.csv', { rows_per_shard: rps, ...BIG_CRAWL }),
          limitMs,
          'spec.yaml',
          (pid) => {
            if (planRss === undefined && existsSync(planPath)) planRss = peakRssKiB(pid);
          },
        );
        const rss = r.peakRssKiB === undefined ? undefined : Math.round(r.peakRssKiB / 1024);
        const planMiB = planRss === undefined ? '?' : Math.round(planRss / 1024);
        if (r.timedOut) return verdict(action, [`not done within ${limitMs / 1000} s: ${firstError(r)}`], '');
        if (r.status !== 0) return verdict(action, [`refused a valid list, exit ${r.status}: ${firstError(r)}`], '');
        const crawl = crawlResultOf(r);
        if (!crawl) return verdict(action, ['exit 0 but no crawl result on stdout'], '');
        const c = await checkDataset(sb.dataRoot, crawl.datasetName, crawl.version, expectedKeys(rows, rps));
        const problems = [
          ...c.problems,
          ...(await checkNoPartialFiles(sb.dataRoot)).problems,
          ...checkLineage(sb.dataRoot),
        ];
        if (rss !== undefined && rss > RSS_LIMIT_MIB) problems.push(`peak RSS ${rss} MiB > ${RSS_LIMIT_MIB} MiB`);
        const t = crawlTimings(sb.dataRoot);
        const notes =
          `${c.rows} rows ${JSON.stringify(c.byStatus)}; planning ${t.planS} s, plan to manifest ${t.crawlS} s; ` +
          `peak RSS ${planMiB} MiB by the end of planning, ${rss ?? '?'} MiB overall (CLI + embedded worker)`;
        return problems.length
          ? { action, outcome: 'FAIL' as const, detail: `${problems.slice(0, 3).join('; ')} (${notes})` }
          : verdict(action, [], `completed: ${notes}`);
      } finally {
        sb.cleanup();
      }
    },
  };
}

/** kill -9 the worker while planning is splitting an N-row list; the retry must come within REPLAN_LIMIT_S and the crawl complete. */
export function planKillTrial(index: number, rows: number, rps: number): TrialSpec {
  return {
    name: `crawl-plan-kill#${index}`,
    stage: 'crawl',
    run: () =>
      inSandbox(async (sb) => {
        const shards = Math.ceil(rows / rps);
        await writeBigList(join(sb.dir, 'urls.csv'), rows);
        writeFileSync(
          join(sb.dir, 'spec.yaml'),
          stringify(crawlSpec('urls.csv', { rows_per_shard: rps, ...BIG_CRAWL })),
        );
        const input = pipelineInputFromSpec(loadSpec(join(sb.dir, 'spec.yaml')));
        // Not 5 s as in the small kill trials: 4 shards x 256 failing fetches keep a shared 2-core machine busy.
        input.crawl.shardHeartbeatTimeout = '30s';
        const layout = new DatasetLayout(new LocalStorage(sb.dataRoot), 'chaos', 1);
        const storage = new LocalStorage(sb.dataRoot);
        const inputDir = storage.localPath(layout.inputDirUri);
        const planPath = storage.localPath(layout.planUri);
        const shardsWritten = () => {
          try {
            return readdirSync(inputDir).filter((n) => !n.includes('.kiln-tmp-')).length;
          } catch {
            return 0;
          }
        };
        const { client, close } = await sb.client();
        try {
          const handle = await client.workflow.start('pipelineWorkflow', {
            taskQueue: WORKFLOW_TASK_QUEUE,
            workflowId: `chaos-plan-kill-${index}`,
            args: [input],
          });
          // Kill once a random number (1 .. shards/2) of input shards are written: mid-split, well before the plan.
          const target = 1 + Math.floor(Math.random() * Math.max(1, Math.floor(shards / 2)));
          const t0 = Date.now();
          while (shardsWritten() < target && !existsSync(planPath) && Date.now() - t0 < 120_000) await sleep(10);
          const written = shardsWritten();
          if (existsSync(planPath))
            return {
              action: `wait for ${target} of ${shards} input shards`,
              outcome: 'FAIL' as const,
              detail: 'planning finished before the kill (list too small for this machine?)',
            };
          await sb.killWorker();
          const killedAt = Date.now();
          const downMs = Math.floor(Math.random() * 1000);
          await sleep(downMs);
          await sb.startWorker();
          const action =
            `kill -9 worker during planning of ${rows.toLocaleString('en')} rows ` +
            `(${written}/${shards} input shards written), restart after ${downMs} ms`;
          while (!existsSync(planPath) && Date.now() - killedAt < REPLAN_LIMIT_S * 1000) await sleep(200);
          const replanS = Math.round((Date.now() - killedAt) / 100) / 10;
          if (!existsSync(planPath))
            return verdict(
              action,
              [`planning not finished ${REPLAN_LIMIT_S} s after the kill (heartbeat timeout too long?)`],
              '',
            );
          let r: PipelineResult;
          try {
            r = await resultWithin(handle, Math.max(300_000, rows * 4));
          } catch (err) {
            return verdict(action, [causeChain(err)], '');
          }
          const problems: string[] = [];
          const bad = r.stages.filter((s) => s.status !== 'completed');
          if (bad.length)
            return verdict(
              action,
              [`stages not completed: ${bad.map((s) => `${s.stage}:${s.status}`).join(', ')}`],
              '',
            );
          const crawl = r.stages.find((s) => s.stage === 'crawl')!.result as { version: number; datasetName: string };
          if (crawl.version !== 1)
            problems.push(
              `the retried plan made version ${crawl.version}, want 1 (the killed attempt's version, resumed)`,
            );
          const c = await checkDataset(sb.dataRoot, crawl.datasetName, crawl.version, expectedKeys(rows, rps));
          problems.push(
            ...c.problems,
            ...(await checkNoPartialFiles(sb.dataRoot)).problems,
            ...checkLineage(sb.dataRoot),
          );
          return verdict(
            action,
            problems,
            `planning done ${replanS} s after the kill; ${c.rows} rows ${JSON.stringify(c.byStatus)}`,
          );
        } finally {
          await close();
        }
      }),
  };
}
