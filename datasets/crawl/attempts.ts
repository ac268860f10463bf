/**
 * A durable per-shard attempt journal, so that an attempt knows how earlier attempts of its shard
 * ended, including the ones whose process died (SIGKILL, an abort in native code, OOM): Temporal
 * reports those only as timeouts, and a dead process throws nothing.
 *
 * Each attempt writes `start-<id>.json` (atomically, before its first row) and, when it ends in this
 * process, `end-<id>.json` (`finished` or `threw`). An attempt that started, has no end record and
 * whose process is gone DIED. The process check makes it exact on one machine: a start record of a
 * live process (an attempt Temporal gave up on that still runs, or the current one) is not a death;
 * the process is identified by host, pid and its start time (/proc), so a reused pid is not mistaken
 * for it. A record from another host cannot be checked and counts as died once it has no end
 * (Temporal only retries an attempt after timing it out).
 *
 * After NATIVE_OFF_AFTER_DEATHS dead attempts, the shard is crawled with the native JPEG path off
 * (`sharp` for every row): one image that crashes the native decoder must not stop a crawl. Each
 * record is its own file written through ArtifactStorage (temp + fsync + rename), so the journal
 * works on any storage with atomic writes and listing (no appends).
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import type { ArtifactStorage } from '../../infra/storage.js';
import type { DatasetLayout } from '../shards/layout.js';
import type { ImageCodec } from './image.js';

/** Dead attempts of a shard after which it is crawled with sharp only. */
export const NATIVE_OFF_AFTER_DEATHS = 2;

export interface AttemptStart {
  id: string;
  host: string;
  pid: number;
  /** The process's start time in clock ticks since boot (/proc/<pid>/stat field 22); null where unknown. */
  processStart: number | null;
  /** Temporal's attempt number, when run as an activity. */
  temporalAttempt: number | null;
  codec: ImageCodec;
  startedAt: string;
}

export interface AttemptEnd {
  id: string;
  outcome: 'finished' | 'threw';
  error?: string;
  endedAt: string;
}

export interface AttemptHistory {
  starts: AttemptStart[];
  ends: Map<string, AttemptEnd>;
  /** Attempts that started and neither finished nor threw, and whose process is gone. */
  died: AttemptStart[];
}

/** What a new attempt of a shard crawls with, and why. */
export interface CodecDecision {
  codec: ImageCodec;
  /** Dead earlier attempts (their count decides). */
  diedAttempts: number;
  /** Human-readable reason, recorded in the stats and the lineage environment when the native path is off. */
  reason: string;
}

function processStartTime(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces) start after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const v = Number(fields[19]); // field 22 overall
    return Number.isFinite(v) ? v : null;
  } catch {
    return null;
  }
}

/** True when the process that wrote `s` is still running (same host, same pid, same start time). */
export function attemptProcessAlive(s: AttemptStart): boolean {
  if (s.host !== hostname()) return false;
  if (s.processStart !== null) return processStartTime(s.pid) === s.processStart;
  try {
    process.kill(s.pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export class ShardAttemptJournal {
  private readonly dirUri: string;
  constructor(
    private readonly storage: ArtifactStorage,
    layout: DatasetLayout,
    shardIndex: number,
  ) {
    this.dirUri = layout.attemptsDirUri(shardIndex);
  }

  async history(): Promise<AttemptHistory> {
    const starts: AttemptStart[] = [];
    const ends = new Map<string, AttemptEnd>();
    for (const name of await this.storage.list(this.dirUri)) {
      let rec: unknown;
      try {
        rec = JSON.parse(await this.storage.readText(this.storage.child(this.dirUri, name)));
      } catch {
        continue; // written atomically, so never partial; anything unreadable is not ours
      }
      if (name.startsWith('start-')) starts.push(rec as AttemptStart);
      else if (name.startsWith('end-')) ends.set((rec as AttemptEnd).id, rec as AttemptEnd);
    }
    starts.sort((a, b) => a.startedAt.localeCompare(b.startedAt) || a.id.localeCompare(b.id));
    const died = starts.filter((s) => !ends.has(s.id) && !attemptProcessAlive(s));
    return { starts, ends, died };
  }

  /** Record the start of an attempt in this process (durable before it returns). */
  async begin(codec: ImageCodec, temporalAttempt?: number): Promise<AttemptStart> {
    const startedAt = new Date().toISOString();
    const id = `${startedAt.replace(/[-:.]/g, '')}-${process.pid}-${randomBytes(4).toString('hex')}`;
    const rec: AttemptStart = {
      id,
      host: hostname(),
      pid: process.pid,
      processStart: processStartTime(process.pid),
      temporalAttempt: temporalAttempt ?? null,
      codec,
      startedAt,
    };
    await this.storage.writeAtomic(this.storage.child(this.dirUri, `start-${id}.json`), `${JSON.stringify(rec)}\n`);
    return rec;
  }

  /** Record how an attempt ended (finished, or threw: not a death). */
  async end(start: AttemptStart, outcome: AttemptEnd['outcome'], error?: string): Promise<void> {
    const rec: AttemptEnd = {
      id: start.id,
      outcome,
      ...(error !== undefined ? { error: error.slice(0, 500) } : {}),
      endedAt: new Date().toISOString(),
    };
    await this.storage.writeAtomic(this.storage.child(this.dirUri, `end-${start.id}.json`), `${JSON.stringify(rec)}\n`);
  }
}

/** The codec for the next attempt, given the shard's history: sharp only after NATIVE_OFF_AFTER_DEATHS deaths. */
export function decideCodec(h: AttemptHistory): CodecDecision {
  const n = h.died.length;
  if (n >= NATIVE_OFF_AFTER_DEATHS) {
    const pids = h.died.map((d) => d.pid).join(', ');
    return {
      codec: 'sharp',
      diedAttempts: n,
      reason: `native JPEG path off for this shard: ${n} earlier attempts died with their worker process (pids ${pids})`,
    };
  }
  return {
    codec: 'auto',
    diedAttempts: n,
    reason: n ? `${n} earlier attempt died with its worker process` : 'no earlier attempt died',
  };
}

/** Read shard i's journal and decide its codec (what crawlShardToParquet does before crawling). */
export async function shardCodecDecision(
  storage: ArtifactStorage,
  layout: DatasetLayout,
  shardIndex: number,
): Promise<CodecDecision> {
  return decideCodec(await new ShardAttemptJournal(storage, layout, shardIndex).history());
}
