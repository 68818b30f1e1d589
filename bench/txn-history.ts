// ovsdb-server's transaction history as a model, so a benchmark can say in advance whether a reconnect can resume
// and check that against the real server. The rules (Open vSwitch 3.1, unchanged on its main branch; read in
// ovsdb/transaction.c and ovsdb/ovsdb-server.c, written down in docs/design/ovsdb.md):
// - history is kept only for clustered (Raft) and relay databases, per database, in memory;
// - every committed transaction that changed something is appended, with its atom count (every column value of the
//   whole old and the whole new row of each changed row, map entries twice);
// - once per main-loop pass the oldest entries go while more than one is kept and either more than 100 are kept or
//   the kept entries' atoms exceed the atoms of the whole database;
// - monitor_cond_since resumes only if the client's last transaction id is still kept.

export const HISTORY_MAX_TRANSACTIONS = 100;

/** Atoms of the transactions kept after trimming, oldest first (what ovsdb_txn_history_run leaves). */
export function trimHistory(atoms: readonly number[], databaseAtoms: number): number[] {
  const kept = [...atoms];
  let sum = kept.reduce((a, b) => a + b, 0);
  while (kept.length > 1 && (kept.length > HISTORY_MAX_TRANSACTIONS || sum > databaseAtoms))
    sum -= kept.shift()!;
  return kept;
}

/**
 * Whether a client whose last transaction had `lastAtoms` atoms can resume after the transactions `after` (their
 * atoms, oldest first) committed in the same database of `databaseAtoms` atoms. The database size is taken as
 * constant over the disconnect (a shrinking database would evict earlier).
 */
export function canResume(lastAtoms: number, after: readonly number[], databaseAtoms: number): boolean {
  return trimHistory([lastAtoms, ...after], databaseAtoms).length === after.length + 1;
}

/** The longest disconnect that can still resume when the database takes `transactionsPerSecond` (and the atom rule
 *  does not bind): the client's own last transaction plus at most 99 later ones stay in history. */
export function resumeWindowSeconds(transactionsPerSecond: number): number {
  return (HISTORY_MAX_TRANSACTIONS - 1) / transactionsPerSecond;
}
