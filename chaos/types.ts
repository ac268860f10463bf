/** What a chaos trial is and what it reports. */
export type Outcome = 'PASS' | 'FAIL' | 'SKIP';

export interface TrialResult {
  /** Trial name, e.g. `crawl-kill#3`. */
  trial: string;
  /** What was done (the fault injected and when). */
  action: string;
  outcome: Outcome;
  /** Why it failed, or what was observed. */
  detail: string;
  seconds: number;
}

export type ChaosStage = 'crawl' | 'filter' | 'train' | 'server' | 'inputs' | 'paths' | 'disk' | 'multi';

export interface TrialSpec {
  name: string;
  stage: ChaosStage;
  run(): Promise<Omit<TrialResult, 'trial' | 'seconds'>>;
}

/** PASS when no problems, else FAIL with the first problems. */
export function verdict(action: string, problems: string[], detail: string): Omit<TrialResult, 'trial' | 'seconds'> {
  return problems.length
    ? { action, outcome: 'FAIL', detail: problems.slice(0, 3).join('; ') }
    : { action, outcome: 'PASS', detail };
}
