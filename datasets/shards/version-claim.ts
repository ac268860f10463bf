/**
 * Claiming a dataset version number for one plan. Two jobs planning the same dataset name at the
 * same moment would otherwise both see version N free (plan.json is written only when planning
 * ends) and write into the same directory. The first planner creates `claim.json` with its plan
 * fingerprint, exclusively; a later planner with another fingerprint moves on to the next version,
 * and one with the same fingerprint (a retry, or an identical job) shares the version, which is safe
 * because planning writes the same content for the same fingerprint.
 */
import type { ArtifactStorage } from '../../infra/storage.js';
import type { DatasetLayout } from './layout.js';

interface VersionClaim {
  fingerprint: string;
  claimedAt: string;
}

/** True when the version is (now) claimed for `fingerprint`; false when another plan holds it. */
export async function claimVersion(storage: ArtifactStorage, layout: DatasetLayout, fingerprint: string): Promise<boolean> {
  const claim: VersionClaim = { fingerprint, claimedAt: new Date().toISOString() };
  if (await storage.createExclusive(layout.claimUri, `${JSON.stringify(claim)}\n`)) return true;
  const held = JSON.parse(await storage.readText(layout.claimUri)) as VersionClaim;
  return held.fingerprint === fingerprint;
}
