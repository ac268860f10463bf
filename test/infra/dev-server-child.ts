/**
 * Child process for dev-server-watch.test.ts: starts the embedded Temporal dev server as the CLI
 * does (ensureTemporalServer with KILN_DATA_ROOT / TEMPORAL_ADDRESS from the environment), prints
 * "ready <dbFile>", then waits to be killed. With argv[2] = "abort" it aborts after starting.
 */
import { loadConfig } from '../../infra/config.js';
import { ensureTemporalServer } from '../../infra/temporal/server.js';

const server = await ensureTemporalServer(loadConfig());
process.stdout.write(`ready ${server.dbFile}\n`);
if (process.argv[2] === 'abort') setTimeout(() => process.abort(), 100);
else setInterval(() => undefined, 60_000);
