/**
 * The thread behind PgDb (sql.ts): one `pg` connection; each message is one query, answered on
 * the port, then the shared flag wakes the blocked caller. BIGINT comes back as a JS number (ids,
 * byte counts and sequence numbers stay far below 2^53), so rows equal SQLite's row for row.
 */
import { workerData, type MessagePort } from 'node:worker_threads';
import pg from 'pg';

const { url, flag, port } = workerData as { url: string; flag: Int32Array; port: MessagePort };
pg.types.setTypeParser(20, (v: string) => {
  const n = Number(v);
  if (!Number.isSafeInteger(n)) throw new Error(`BIGINT ${v} is beyond 2^53`);
  return n;
});
const client = new pg.Client({ connectionString: url, application_name: 'kiln-lineage' });
client.on('error', () => undefined); // a dropped connection surfaces as the next query's error

function reply(msg: unknown): void {
  port.postMessage(msg);
  Atomics.store(flag, 0, 1);
  Atomics.notify(flag, 0);
}

const fail = (err: unknown) =>
  reply({ error: { message: (err as Error).message, code: (err as { code?: string }).code } });

port.on('message', (m: { op: string; text?: string; values?: unknown[] }) => {
  try {
    if (m.op === 'connect') client.connect().then(() => reply({}), fail);
    else if (m.op === 'close')
      client.end().then(
        () => reply({}),
        () => reply({}),
      );
    else
      client
        .query({ text: m.text!, values: m.values?.length ? m.values : undefined })
        .then((r) => reply({ rows: r.rows, rowCount: r.rowCount ?? 0 }), fail);
  } catch (err) {
    fail(err); // the caller is blocked until it hears back, whatever happened
  }
});
