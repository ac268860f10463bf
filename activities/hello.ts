/**
 * The `hello` stage: writes a small greeting artifact and a summary that consumes it, each
 * recorded in lineage. It proves client, server, worker, storage and lineage work together.
 * Idempotent: output URIs are a pure function of (jobId, part); a retry finds the artifact with its
 * recorded hash and returns it.
 */
import { temporalFailures } from './failures.js';
import { sha256Hex } from '../infra/hash.js';
import { writeRecordedArtifact } from './recorded-artifact.js';
import type { ActivityDeps } from './deps.js';
import { withRun } from './run-lifecycle.js';

export interface GreetingInput {
  jobId: string;
  message: string;
}

export interface ArtifactRef {
  uri: string;
  sha256: string;
  bytes: number;
}

export function createHelloActivities(deps: ActivityDeps) {
  return temporalFailures({
    /** Write hello/<jobId>/greeting.txt. Timeout: seconds. Retry: default policy. */
    async writeGreeting(input: GreetingInput): Promise<ArtifactRef> {
      const runId = `${input.jobId}/hello/greeting`;
      return withRun(deps, { id: runId, jobId: input.jobId, stage: 'hello.greeting', params: input }, () =>
        writeRecordedArtifact(deps, runId, {
          uri: deps.storage.uri('hello', input.jobId, 'greeting.txt'),
          kind: 'hello.greeting',
          content: `${input.message}\n`,
        }),
      );
    },
    /** Read the greeting (checking its hash) and write a summary that records it as consumed. */
    async writeSummary(input: { jobId: string; greeting: ArtifactRef }): Promise<ArtifactRef> {
      const runId = `${input.jobId}/hello/summary`;
      return withRun(deps, { id: runId, jobId: input.jobId, stage: 'hello.summary', params: input }, async () => {
        const text = await deps.storage.readText(input.greeting.uri);
        const sha = sha256Hex(text);
        if (sha !== input.greeting.sha256)
          throw new Error(`greeting ${input.greeting.uri} changed: sha256 ${sha}, expected ${input.greeting.sha256}`);
        const consumed = deps.lineage.getArtifactByUri(input.greeting.uri);
        if (consumed) deps.lineage.linkArtifact(runId, consumed.id, 'consumed');
        const summary = JSON.stringify(
          { greeting: input.greeting, words: text.trim().split(/\s+/).length, codeVersion: deps.codeVersion },
          null,
          2,
        );
        return writeRecordedArtifact(deps, runId, {
          uri: deps.storage.uri('hello', input.jobId, 'summary.json'),
          kind: 'hello.summary',
          content: summary,
        });
      });
    },
  });
}
