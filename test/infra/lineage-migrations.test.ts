/**
 * The lineage migrations are append only: a store records only the version numbers it applied, so a
 * released migration whose text changed would leave old and new stores with different schemas. The
 * text of every released migration (both dialects, derived from one DDL text) is pinned here by
 * its sha256; a new migration adds its row here, an edited one fails.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sha256Hex } from '../../infra/hash.js';
import { LATEST_SCHEMA_VERSION, MIGRATIONS } from '../../infra/lineage/migrations.js';

/** version -> [sha256 of the SQLite form, sha256 of the PostgreSQL form], as released. */
const RELEASED: Record<number, [string, string]> = {
  1: [
    '40f7b5d70e9218349bfd86fbef2cc7808ab4405a696707c234e4fa2c01567595',
    'a40740787e5525d890579a6c56e3829a9ac339d14df8e9a24e1b19a025005e33',
  ],
  2: [
    '281667c476ff988d136bc6983e047431ddb596d19e6d7091a3f38b19e3f6d15c',
    '9b4d4b1d618c1510fd27cbba32b84de8fb838f76bbfe6f31550c0bb94cfe320c',
  ],
  3: [
    'eff9d0d7b391383b11cbd8287e1b229b0531df2aa6805ddfd8e15d665447fd43',
    'eff9d0d7b391383b11cbd8287e1b229b0531df2aa6805ddfd8e15d665447fd43',
  ],
  4: [
    'd5ea74bf7f4f85c883efd27a51b5c1acf1b9349d5fb0bb8fd9af9c07cf2f33af',
    '87d80bfa58c67174324886de899eb515862915401f57c6aeb3f62b39d74ae6f3',
  ],
};

test('released lineage migrations keep their exact text in both dialects; versions run 1..N', () => {
  assert.deepEqual(
    MIGRATIONS.map((m) => m.version),
    Array.from({ length: MIGRATIONS.length }, (_, i) => i + 1),
  );
  assert.equal(LATEST_SCHEMA_VERSION, MIGRATIONS.length);
  for (const m of MIGRATIONS) {
    const pinned = RELEASED[m.version];
    assert.ok(pinned, `migration ${m.version} is new: pin its two sha256 in RELEASED`);
    assert.deepEqual(
      [sha256Hex(m.sql), sha256Hex(m.postgres)],
      pinned,
      `migration ${m.version} (${m.description}) changed: add a new migration instead of editing a released one`,
    );
  }
});

test('each dialect form uses only its own integer types', () => {
  for (const m of MIGRATIONS) {
    assert.doesNotMatch(m.sql, /BIGINT|IDENTITY/, `migration ${m.version} SQLite form`);
    assert.doesNotMatch(m.postgres, /\bINTEGER\b|AUTOINCREMENT/, `migration ${m.version} PostgreSQL form`);
  }
});
