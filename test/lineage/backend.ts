/** A lineage backend under test: a fresh, empty store location per call (a SQLite file, or a new PostgreSQL database). */
export interface LineageBackend {
  name: 'sqlite' | 'postgres';
  location(): Promise<string>;
}
