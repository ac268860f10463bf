/**
 * The workflow bundle (webpack over `dist/workflows/index.js`, a few seconds of CPU), built once per
 * code version and kept on disk, so each `kiln` process that runs a worker does not bundle again.
 *
 * The key is the sha256 of every compiled module under `dist/` (tests excluded) and of the installed
 * `@temporalio/workflow` version: any change to the code the bundle could contain builds a new one.
 * Files are written whole (temp + rename), so concurrent processes may race on a miss and each still
 * reads a complete bundle. The newest few bundles are kept; older ones are removed.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, readdirSync, mkdirSync, writeFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundleWorkflowCode, type WorkflowBundleWithSourceMap } from '@temporalio/worker';

const DIST = fileURLToPath(new URL('../../', import.meta.url));
const WORKFLOWS_PATH = join(DIST, 'workflows', 'index.js');
const CACHE_DIR = join(DIST, '.workflow-bundles');
const KEEP = 4;

const quietBundlerLogger = {
  log: () => undefined,
  trace: () => undefined,
  debug: () => undefined,
  info: () => undefined,
  warn: (m: string) => console.warn(m),
  error: (m: string) => console.error(m),
};

function compiledModules(dir: string, out: string[] = []): string[] {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name === 'test' || e.name.startsWith('.')) continue;
      compiledModules(p, out);
    } else if (e.name.endsWith('.js')) out.push(p);
  }
  return out;
}

/** sha256 over the compiled modules (path + content) and the workflow SDK's version. */
export function bundleKey(): string {
  const h = createHash('sha256');
  const sdk = createRequire(import.meta.url)('@temporalio/workflow/package.json') as { version: string };
  h.update(`@temporalio/workflow@${sdk.version}\0`);
  for (const p of compiledModules(DIST).sort()) {
    h.update(`${relative(DIST, p)}\0`);
    h.update(readFileSync(p));
    h.update('\0');
  }
  return h.digest('hex');
}

function writeWhole(path: string, text: string): void {
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}

function pruneOld(keep: string): void {
  try {
    const bundles = readdirSync(CACHE_DIR)
      .filter((n) => n.endsWith('.js') && !n.startsWith(keep))
      .map((n) => ({ n, t: statSync(join(CACHE_DIR, n)).mtimeMs }))
      .sort((a, b) => b.t - a.t);
    for (const { n } of bundles.slice(KEEP - 1)) {
      rmSync(join(CACHE_DIR, n), { force: true });
      rmSync(join(CACHE_DIR, `${n}.map`), { force: true });
    }
  } catch {
    // pruning is housekeeping only
  }
}

/** Read the bundle for this code version from the cache, or build and store it. */
export async function cachedWorkflowBundle(): Promise<WorkflowBundleWithSourceMap> {
  const key = bundleKey();
  const codePath = join(CACHE_DIR, `${key}.js`);
  try {
    return { code: readFileSync(codePath, 'utf8'), sourceMap: readFileSync(`${codePath}.map`, 'utf8') };
  } catch {
    // a miss (or a half-pruned pair): build it
  }
  const built = await bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, logger: quietBundlerLogger });
  try {
    mkdirSync(CACHE_DIR, { recursive: true });
    writeWhole(`${codePath}.map`, built.sourceMap);
    writeWhole(codePath, built.code);
    pruneOld(key);
  } catch (e) {
    console.warn(`kiln: could not cache the workflow bundle in ${CACHE_DIR} (${(e as Error).message}); continuing`);
  }
  return built;
}
