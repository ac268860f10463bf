/**
 * Claiming a dataset version number for one plan. Two jobs planning the same dataset name at the
 * same moment would otherwise both see version N free (plan.json is written only when planning
 * ends) and write into the same directory. The first planner creates `claim.json` with its plan
 * fingerprint, exclusively; a later planner with another fingerprint moves on to the next version,
 * and one with the same fingerprint (a retry, or an identical job) shares the version, which is safe
 * because planning writes the same content for the same fingerprint.
 */
import { ConfigError } from '../../infra/errors.js';
import type { ArtifactStorage } from '../../infra/storage.js';
import { DatasetLayout } from './layout.js';

interface VersionClaim {
  fingerprint: string;
  claimedAt: string;
}

/** True when the version is (now) claimed for `fingerprint`; false when another plan holds it. */
export async function claimVersion(
  storage: ArtifactStorage,
  layout: DatasetLayout,
  fingerprint: string,
): Promise<boolean> {
  const claim: VersionClaim = { fingerprint, claimedAt: new Date().toISOString() };
  if (await storage.createExclusive(layout.claimUri, `${JSON.stringify(claim)}\n`)) return true;
  const held = JSON.parse(await storage.readText(layout.claimUri)) as VersionClaim;
  return held.fingerprint === fingerprint;
}

/** What a stage needs to pick the version a plan writes. */
export interface VersionChoice {
  datasetName: string;
  /** The plan's fingerprint: same inputs and options, same fingerprint. */
  fingerprint: string;
  /** An explicit version: resume it (same plan) or claim it (free), else a ConfigError. */
  explicit?: number;
  /** The first version to look at (crawl: after the newest recorded; derived stages: after the source). */
  first: number;
  /** The newest version of this name recorded in lineage: a new plan is numbered after it. */
  latestRecorded: number;
}

/** The plan.json of a version (any stage's: each has a `fingerprint`), or undefined when absent. */
export async function readVersionPlan<P extends { fingerprint?: string }>(
  storage: ArtifactStorage,
  layout: DatasetLayout,
): Promise<P | undefined> {
  if (!(await storage.exists(layout.planUri))) return undefined;
  return JSON.parse(await storage.readText(layout.planUri)) as P;
}

/**
 * The one version rule of every stage that writes a new dataset version: from `first` upwards, a
 * version whose plan has the same fingerprint is resumed; a free version (no plan, no manifest)
 * after the newest recorded one is claimed (claimVersion, so two planners never share one); any
 * other is skipped. An explicit version is resumed or claimed, or refused with a ConfigError.
 */
export async function chooseVersion(
  storage: ArtifactStorage,
  c: VersionChoice,
): Promise<{ layout: DatasetLayout; resumed: boolean }> {
  for (let version = c.explicit ?? c.first; ; version++) {
    const layout = new DatasetLayout(storage, c.datasetName, version);
    const existing = await readVersionPlan(storage, layout);
    if (existing?.fingerprint === c.fingerprint) return { layout, resumed: true };
    const taken = existing !== undefined || (await storage.exists(layout.manifestUri));
    if (c.explicit !== undefined) {
      if (!taken && (await claimVersion(storage, layout, c.fingerprint))) return { layout, resumed: false };
      throw new ConfigError(
        `dataset ${layout.id} already exists with different inputs or options`,
        'datasets are immutable: omit the version to create the next one, or rerun with the same inputs and options to resume it.',
      );
    }
    if (!taken && version > c.latestRecorded && (await claimVersion(storage, layout, c.fingerprint)))
      return { layout, resumed: false };
  }
}
