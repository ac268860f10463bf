/**
 * Helpers for trials that go through the real CLI (`kiln run spec.yaml`, with its embedded
 * Temporal dev server and in-process worker): a fresh temp dir per trial, a spec file, a run.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { freePort, kiln, type CliResult } from './harness.js';

export interface CliSandbox {
  dir: string;
  dataRoot: string;
  env: Record<string, string>;
  cleanup(): void;
}

/** A temp dir with `<dir>/root/data` as the data root and a free port for the embedded server. */
export async function cliSandbox(prefix = 'kiln-chaos-cli-'): Promise<CliSandbox> {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const dataRoot = join(dir, 'root', 'data');
  return {
    dir,
    dataRoot,
    env: { KILN_DATA_ROOT: dataRoot, TEMPORAL_ADDRESS: `127.0.0.1:${await freePort()}` },
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** A crawl-only spec over `source` (loopback only), overridable. */
export function crawlSpec(
  source: string,
  crawl: Record<string, unknown> = {},
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    version: 1,
    name: 'chaos',
    sources: [{ path: source }],
    crawl: {
      rows_per_shard: 50,
      image_size: 16,
      resize_mode: 'center_crop',
      timeout_ms: 3000,
      retries: 0,
      allow_addresses: ['127.0.0.1'],
      ...crawl,
    },
    ...extra,
  };
}

/** Write `spec` as <dir>/<file> (YAML, or JSON for .json) and run `kiln run <file> --json`. */
export function runSpec(
  sb: CliSandbox,
  spec: unknown,
  timeoutMs: number,
  file = 'spec.yaml',
  everySecond?: (pid: number) => void,
): Promise<CliResult> {
  const path = join(sb.dir, file);
  writeFileSync(path, file.endsWith('.json') ? JSON.stringify(spec) : stringify(spec));
  return kiln(['run', path, '--json'], sb.env, timeoutMs, everySecond);
}

/** The crawl stage's result from `kiln run spec --json` output. */
export function crawlResultOf(r: CliResult): { datasetName: string; version: number; rows: number } | undefined {
  try {
    const line = r.stdout.trim().split('\n').pop() ?? '';
    const out = JSON.parse(line) as {
      result: { stages: { stage: string; result: { datasetName: string; version: number; rows: number } }[] };
    };
    return out.result.stages.find((s) => s.stage === 'crawl')?.result;
  } catch {
    return undefined;
  }
}

/** First line(s) of stderr for the table. */
export function firstError(r: CliResult): string {
  const lines = r.stderr
    .split('\n')
    .filter((l) => l.trim() && !l.startsWith('kiln: started') && !l.startsWith('kiln: stopped'));
  return lines.slice(0, 2).join(' | ').slice(0, 220);
}
