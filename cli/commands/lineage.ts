/** `kiln lineage ...`: read the lineage store (no Temporal needed). */
import type { Command } from 'commander';
import { loadConfig } from '../../infra/config.js';
import { LineageStore, isPostgresUrl } from '../../infra/lineage/store.js';
import { MissingFileError } from '../../infra/errors.js';
import { existsSync, writeFileSync } from 'node:fs';
import { resolveArtifactRef, traceArtifact } from '../../infra/lineage/trace.js';
import { renderTraceTree } from '../trace-tree.js';
import { exportOpenLineage } from '../../infra/lineage/openlineage.js';
import { openStorage } from '../../infra/storage-open.js';
import { registerLineageCopy } from './lineage-copy.js';
import { parseWhereUsedQuery, whereUsed } from '../../datasets/audit/where-used.js';

function openLineage(): LineageStore {
  const config = loadConfig();
  if (!isPostgresUrl(config.lineagePath) && !existsSync(config.lineagePath)) {
    throw new MissingFileError(
      `no lineage database at ${config.lineagePath}`,
      'run a job first (kiln run hello), or set KILN_DATA_ROOT to the data root you used.',
    );
  }
  return new LineageStore(config.lineagePath);
}

export function registerLineage(program: Command): void {
  const lineage = program
    .command('lineage')
    .description('Audit lineage: which data, from where, made how, by which code.');
  lineage
    .command('jobs')
    .description('List recorded jobs, newest first.')
    .option('--limit <n>', 'how many', (v) => Number(v), 50)
    .option('--json', 'machine-readable output', false)
    .action((o: { limit: number; json: boolean }) => {
      const store = openLineage();
      try {
        const jobs = store.listJobs(o.limit);
        if (o.json) process.stdout.write(`${JSON.stringify(jobs)}\n`);
        else
          for (const j of jobs)
            process.stdout.write(
              `${j.status.padEnd(10)} ${j.kind.padEnd(10)} ${j.startedAt}  ${j.id}  ${j.codeVersion}\n`,
            );
      } finally {
        store.close();
      }
    });
  registerLineageVerify(lineage);
  registerLineageAudits(lineage);
  registerLineageCopy(lineage);
  lineage
    .command('show')
    .description('Show one job: its stage runs and the artifacts each consumed and produced (with sha256).')
    .argument('<jobId>', 'the job (workflow) id')
    .option('--json', 'machine-readable output', false)
    .action((jobId: string, o: { json: boolean }) => {
      const store = openLineage();
      try {
        const job = store.getJob(jobId);
        if (!job)
          throw new MissingFileError(
            `no job ${JSON.stringify(jobId)} in ${store.path}`,
            'list jobs with `kiln lineage jobs`.',
          );
        const runs = store.runsOfJob(jobId).map((r) => ({
          ...r,
          consumed: store.artifactsOfRun(r.id, 'consumed'),
          produced: store.artifactsOfRun(r.id, 'produced'),
        }));
        if (o.json) {
          process.stdout.write(`${JSON.stringify({ job, runs })}\n`);
          return;
        }
        process.stdout.write(
          `job ${job.id}  ${job.kind}  ${job.status}  code ${job.codeVersion}\n  params ${JSON.stringify(job.params)}\n`,
        );
        for (const r of runs) {
          process.stdout.write(`  run ${r.id}  ${r.stage}  ${r.status}\n`);
          for (const a of r.consumed) process.stdout.write(`    consumed ${a.uri}  sha256 ${a.sha256}  ${a.bytes} B\n`);
          for (const a of r.produced) process.stdout.write(`    produced ${a.uri}  sha256 ${a.sha256}  ${a.bytes} B\n`);
        }
      } finally {
        store.close();
      }
    });
}

export function registerLineageVerify(lineage: Command): void {
  lineage
    .command('verify')
    .description('Check the hash-chained lineage log: detects edited or deleted records (exit 1 when tampered).')
    .option('--json', 'machine-readable output', false)
    .action((o: { json: boolean }) => {
      const store = openLineage();
      try {
        const r = store.verify();
        if (o.json) process.stdout.write(`${JSON.stringify(r)}\n`);
        else if (r.ok)
          process.stdout.write(
            `lineage OK: ${r.entries} log entries, ${r.rows} records, chain intact (${store.path})\n`,
          );
        else {
          process.stdout.write(`lineage TAMPERED: ${r.problems.length} problem(s) in ${store.path}\n`);
          for (const p of r.problems) process.stdout.write(`  ${p.kind}: ${p.detail}\n`);
        }
        if (!r.ok) process.exitCode = 1;
      } finally {
        store.close();
      }
    });
}

export function registerLineageAudits(lineage: Command): void {
  lineage
    .command('trace')
    .description(
      'Everything behind an artifact: the runs, their params (thresholds, configs), models and code versions, the dataset versions and the source files.',
    )
    .argument('<ref>', 'artifact URI (checkpoint, shard, manifest), sha256, or dataset version id (name@version)')
    .option('--json', 'machine-readable output', false)
    .action((ref: string, o: { json: boolean }) => {
      const store = openLineage();
      try {
        const a = resolveArtifactRef(store, ref);
        if (!a)
          throw new MissingFileError(
            `nothing recorded in lineage matches ${JSON.stringify(ref)}`,
            'pass an artifact URI, a sha256 or a dataset version id (name@version); list jobs with `kiln lineage jobs`.',
          );
        const t = traceArtifact(store, a);
        process.stdout.write(o.json ? `${JSON.stringify(t)}\n` : `${renderTraceTree(t)}\n`);
      } finally {
        store.close();
      }
    });
  lineage
    .command('where-used')
    .description(
      'Takedown audit: every dataset version row and every checkpoint that contains a URL, an image (sha256 of its original bytes) or any URL of a domain.',
    )
    .argument('<ref>', 'http(s) URL, 64-hex sha256, or domain (example.com)')
    .option('--json', 'machine-readable output', false)
    .action(async (ref: string, o: { json: boolean }) => {
      const q = parseWhereUsedQuery(ref);
      const store = openLineage();
      try {
        const r = await whereUsed(store, openStorage(loadConfig().dataRoot), q);
        if (o.json) {
          process.stdout.write(`${JSON.stringify(r)}\n`);
          return;
        }
        process.stdout.write(
          `${r.rows.length} row(s) in ${r.datasetVersions.length} dataset version(s) (${r.shardsScanned} shards scanned)\n`,
        );
        for (const row of r.rows)
          process.stdout.write(`  ${row.datasetId}  key ${row.key}  ${row.status}  ${row.url}\n`);
        process.stdout.write(`${r.checkpoints.length} checkpoint file(s) trained on them:\n`);
        for (const c of r.checkpoints) process.stdout.write(`  ${c.uri}  sha256 ${c.sha256.slice(0, 16)}…\n`);
      } finally {
        store.close();
      }
    });
  lineage
    .command('export')
    .description(
      'Export every run as OpenLineage RunEvents (spec 2-0-2), one JSON object per line, for Marquez or any OpenLineage consumer.',
    )
    .option('--out <file>', 'write to a file instead of stdout')
    .action((o: { out?: string }) => {
      const store = openLineage();
      try {
        const lines = exportOpenLineage(store)
          .map((e) => JSON.stringify(e))
          .join('\n');
        if (o.out) writeFileSync(o.out, `${lines}\n`);
        else process.stdout.write(`${lines}\n`);
      } finally {
        store.close();
      }
    });
}
