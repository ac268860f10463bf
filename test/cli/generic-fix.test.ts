/**
 * The Fix a failed job prints when its root error carries none: a full disk is named as such
 * whether a file write (ENOSPC) or the lineage database (SQLite's SQLITE_FULL) hit it first.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { genericFix } from '../../cli/commands/run.js';

describe('genericFix', () => {
  it('names the full disk for ENOSPC and for SQLite\'s "database or disk is full"', () => {
    for (const m of [
      'ENOSPC: no space left on device, write',
      'SqliteError: database or disk is full',
      'SQLITE_FULL',
    ]) {
      assert.match(genericFix(m), /free space on the disk holding KILN_DATA_ROOT/, m);
    }
  });

  it('names permissions for EACCES / EROFS and falls back to the resume advice otherwise', () => {
    assert.match(genericFix('EACCES: permission denied, open'), /writable/);
    assert.match(genericFix('EROFS: read-only file system'), /writable/);
    assert.match(genericFix('something else broke'), /rerun the same command .*same --id/);
  });
});
