import { LineageStore } from '../../infra/lineage/store.js';

/** A lineage backend under test: a fresh, empty store location per call (a SQLite file, or a new PostgreSQL database). */
export interface LineageBackend {
  name: 'sqlite' | 'postgres';
  location(): Promise<string>;
}

/** Runs `fn` on a store opened at a fresh location of backend `b`, closing it afterwards. */
export async function withStore(
  b: LineageBackend,
  fn: (s: LineageStore, location: string) => void | Promise<void>,
): Promise<void> {
  const location = await b.location();
  const s = new LineageStore(location);
  try {
    await fn(s, location);
  } finally {
    s.close();
  }
}
