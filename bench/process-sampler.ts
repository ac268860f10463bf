/**
 * Samples a process tree from /proc: peak of the summed RSS and PSS of all its processes, and the
 * CPU seconds of the live ones (Linux only; elsewhere the peaks stay 0).
 */
import { readFileSync, readdirSync } from 'node:fs';

const TICK = 100; // USER_HZ on Linux

function readStat(pid: number): { ppid: number; cpuTicks: number } | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return { ppid: Number(rest[1]), cpuTicks: Number(rest[11]) + Number(rest[12]) };
  } catch {
    return undefined;
  }
}

function memKb(pid: number): { rss: number; pss: number } {
  let rss = 0;
  let pss = 0;
  try {
    const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    rss = m ? Number(m[1]) : 0;
    const p = /^Pss:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
    pss = p ? Number(p[1]) : rss;
  } catch {
    // process gone or not readable
  }
  return { rss, pss };
}

export class ProcessTreeSampler {
  private peakRss = 0;
  private peakPss = 0;
  private lastCpuTicks = 0;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly rootPid: number,
    intervalMs: number,
  ) {
    this.timer = setInterval(() => this.sample(), intervalMs);
  }

  private tree(): number[] {
    let pids: number[];
    try {
      pids = readdirSync('/proc')
        .filter((n) => /^\d+$/.test(n))
        .map(Number);
    } catch {
      return [];
    }
    const children = new Map<number, number[]>();
    for (const pid of pids) {
      const st = readStat(pid);
      if (!st) continue;
      const list = children.get(st.ppid) ?? [];
      list.push(pid);
      children.set(st.ppid, list);
    }
    const out: number[] = [];
    const stack = [this.rootPid];
    while (stack.length) {
      const p = stack.pop()!;
      out.push(p);
      stack.push(...(children.get(p) ?? []));
    }
    return out;
  }

  sample(): void {
    let rss = 0;
    let pss = 0;
    let cpu = 0;
    for (const pid of this.tree()) {
      const m = memKb(pid);
      rss += m.rss;
      pss += m.pss;
      cpu += readStat(pid)?.cpuTicks ?? 0;
    }
    this.peakRss = Math.max(this.peakRss, rss);
    this.peakPss = Math.max(this.peakPss, pss);
    this.lastCpuTicks = Math.max(this.lastCpuTicks, cpu);
  }

  /** Stop sampling; peak KB and CPU seconds seen. */
  stop(): { rssKb: number; pssKb: number; cpuS: number } {
    clearInterval(this.timer);
    return { rssKb: this.peakRss, pssKb: this.peakPss, cpuS: this.lastCpuTicks / TICK };
  }
}
