/**
 * One writer process of the concurrency test (a "machine"): records a job, then `count` runs, each
 * with a produced artifact and a finish, into the lineage store given as argv[2] (file or URL).
 *   node dist/test/lineage/concurrent-writer.js <store> <writerId> <count>
 */
import { LineageStore } from '../../infra/lineage/store.js';

const [store, writer, count] = process.argv.slice(2);
const s = new LineageStore(store!);
try {
  const jobId = `job-${writer}`;
  s.startJob({ id: jobId, kind: 'crawl', workflowId: jobId, params: { writer }, codeVersion: 'test' });
  for (let i = 0; i < Number(count); i++) {
    const runId = `${jobId}/run-${i}`;
    s.startRun({ id: runId, jobId, stage: 'crawl-shard', params: { i }, codeVersion: 'test' });
    s.recordArtifactOfRun(runId, 'produced', {
      uri: `s3://b/${writer}/shard-${i}.parquet`,
      kind: 'shard',
      sha256: `${writer}`.padStart(8, '0') + String(i).padStart(56, '0'),
      bytes: 1000 + i,
    });
    s.finishRun(runId, 'completed', { rows: i });
  }
  s.finishJob(jobId, 'completed');
} finally {
  s.close();
}
