/**
 * Bad inputs through the real CLI (`kiln run spec.yaml`): a corrupt Parquet, a CSV with broken
 * quoting, URLs that are not URLs, and captions that are empty, 100 KB long or invalid UTF-8
 * (the 1,000,000-row list is in plan-trials.ts).
 * A bad input must either be refused with an error that names the fix, or every row must come
 * out exactly once with a status.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startSyntheticWeb } from '../demo/synthetic-web.js';
import { checkDataset, checkFix, checkLineage, checkNoPartialFiles, expectedKeys } from './checks.js';
import { cliSandbox, crawlResultOf, crawlSpec, firstError, runSpec, type CliSandbox } from './cli-trial.js';
import type { TrialSpec } from './types.js';
import { verdict } from './types.js';

async function withCli<T>(fn: (sb: CliSandbox) => Promise<T>): Promise<T> {
  const sb = await cliSandbox();
  try {
    return await fn(sb);
  } finally {
    sb.cleanup();
  }
}

/** Either a clean refusal (exit 1/2/4 with Fix:, no dataset visible) or a crawl with every row once. */
async function refusedOrComplete(
  sb: CliSandbox,
  spec: unknown,
  rows: number,
  rps: number,
  timeoutMs: number,
  action: string,
) {
  const r = await runSpec(sb, spec, timeoutMs);
  if (r.timedOut)
    return verdict(action, [`no answer within ${timeoutMs / 1000} s (retrying forever?): ${firstError(r)}`], '');
  const partial = await checkNoPartialFiles(sb.dataRoot);
  if (r.status !== 0) {
    return verdict(
      action,
      [...checkFix(r.stderr, `exit ${r.status}`), ...partial.problems],
      `refused, exit ${r.status}: ${firstError(r)}`,
    );
  }
  const crawl = crawlResultOf(r);
  if (!crawl) return verdict(action, ['exit 0 but no crawl result on stdout'], '');
  const c = await checkDataset(sb.dataRoot, crawl.datasetName, crawl.version, expectedKeys(rows, rps));
  return verdict(
    action,
    [...c.problems, ...partial.problems, ...checkLineage(sb.dataRoot)],
    `completed: ${c.rows} rows ${JSON.stringify(c.byStatus)}`,
  );
}

export function inputTrials(): TrialSpec[] {
  return [
    {
      name: 'input-corrupt-parquet',
      stage: 'inputs',
      run: () =>
        withCli(async (sb) => {
          // A Parquet magic header and footer around garbage.
          writeFileSync(
            join(sb.dir, 'urls.parquet'),
            Buffer.concat([
              Buffer.from('PAR1'),
              Buffer.alloc(500, 0x5a),
              Buffer.from([0x10, 0, 0, 0]),
              Buffer.from('PAR1'),
            ]),
          );
          const action = 'kiln run spec.yaml with a corrupt urls.parquet';
          const r = await runSpec(sb, crawlSpec('urls.parquet'), 150_000);
          if (r.timedOut) return verdict(action, [`no answer within 150 s: ${firstError(r)}`], '');
          const problems = r.status === 0 ? ['a corrupt Parquet was accepted'] : checkFix(r.stderr, `exit ${r.status}`);
          problems.push(...(await checkNoPartialFiles(sb.dataRoot)).problems);
          return verdict(action, problems, `refused, exit ${r.status}: ${firstError(r)}`);
        }),
    },
    {
      name: 'input-csv-broken-quoting',
      stage: 'inputs',
      run: () =>
        withCli(async (sb) => {
          writeFileSync(
            join(sb.dir, 'urls.csv'),
            'url,caption\nhttp://127.0.0.1:1/a.jpg,"a caption\nhttp://127.0.0.1:1/b.jpg,"unterminated ""quote\nhttp://127.0.0.1:1/c.jpg,ok\n',
          );
          return refusedOrComplete(sb, crawlSpec('urls.csv'), 3, 50, 120_000, 'CSV with an unterminated quoted field');
        }),
    },
    {
      name: 'input-not-urls',
      stage: 'inputs',
      run: () =>
        withCli(async (sb) => {
          const web = await startSyntheticWeb({ count: 4, seed: 5, faultEvery: 0 });
          try {
            const good = web.items.map((i) => `${web.baseUrl}${i.path}`);
            const bad = [
              'not a url',
              'ftp://127.0.0.1/x.jpg',
              'javascript:alert(1)',
              'http://',
              'http://[::1',
              '//127.0.0.1/x.jpg',
              'file:///etc/passwd',
              'http://127.0.0.1:99999/x.jpg',
              ' ',
              'data:image/png;base64,AAAA',
            ];
            const all = [...good, ...bad];
            writeFileSync(
              join(sb.dir, 'urls.jsonl'),
              `${all.map((url, i) => JSON.stringify({ url, caption: `row ${i}` })).join('\n')}\n`,
            );
            const r = await refusedOrComplete(
              sb,
              crawlSpec('urls.jsonl'),
              all.length,
              50,
              120_000,
              `${bad.length} non-URLs among ${good.length} good URLs`,
            );
            if (r.outcome === 'PASS' && !r.detail.includes(`"success":${good.length}`))
              return { ...r, outcome: 'FAIL' as const, detail: `good URLs not all fetched: ${r.detail}` };
            return r;
          } finally {
            await web.close();
          }
        }),
    },
    {
      name: 'input-captions',
      stage: 'inputs',
      run: () =>
        withCli(async (sb) => {
          const web = await startSyntheticWeb({ count: 3, seed: 6, faultEvery: 0 });
          try {
            const [a, b, c] = web.items.map((i) => `${web.baseUrl}${i.path}`);
            const long = 'x'.repeat(100_000);
            const csv = Buffer.concat([
              Buffer.from(`url,caption\n${a},\n${b},${long}\n${c},bad `),
              Buffer.from([0xff, 0xfe, 0xc3]),
              Buffer.from(' utf8\n'),
            ]);
            writeFileSync(join(sb.dir, 'urls.csv'), csv);
            const action = 'captions empty, 100 KB, invalid UTF-8';
            const r = await runSpec(sb, crawlSpec('urls.csv'), 120_000);
            if (r.timedOut || r.status !== 0)
              return verdict(
                action,
                [`exit ${r.status}${r.timedOut ? ' (timeout)' : ''}: ${firstError(r)}`, ...checkFix(r.stderr, 'error')],
                '',
              );
            const crawl = crawlResultOf(r)!;
            const d = await checkDataset(sb.dataRoot, crawl.datasetName, crawl.version, expectedKeys(3, 50));
            const caps = [...d.captions.values()];
            const problems = [...d.problems, ...checkLineage(sb.dataRoot)];
            const longest = Math.max(...caps.map((x) => x?.length ?? 0));
            if (longest !== 100_000) problems.push(`100 KB caption came back with length ${longest}`);
            const lengths = caps.map((x) => (x === null ? 'null' : x.length)).join(', ');
            const short = JSON.stringify(caps.filter((x) => (x?.length ?? 0) < 100));
            return verdict(
              action,
              problems,
              `${d.rows} rows ${JSON.stringify(d.byStatus)}; caption lengths ${lengths}; ${short}`,
            );
          } finally {
            await web.close();
          }
        }),
    },
  ];
}
