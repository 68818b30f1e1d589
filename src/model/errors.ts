// Every failure sluice reports has a stable code (SLUICE_E_*), listed in docs/errors.md.
// test/unit/errors.test.ts checks that the docs list every code defined here.

export const ERROR_CODES = {
  SLUICE_E_CONFIG_PARSE: 'the config file is not valid YAML or JSON',
  SLUICE_E_CONFIG_INVALID: 'the config does not satisfy the schema or a semantic rule (details list every problem)',
  SLUICE_E_IO: 'a file or process could not be read, written or run',
  SLUICE_E_USAGE: 'a command was called with wrong arguments',
  // OVSDB client (src/ovsdb): each thrown as OvsdbError (src/ovsdb/errors.ts).
  SLUICE_E_OVSDB_CONNECT: 'no OVSDB remote could be reached (or none is a usable cluster member) in time',
  SLUICE_E_OVSDB_DISCONNECTED: 'the connection dropped before the reply (a transaction may have committed)',
  SLUICE_E_OVSDB_TIMEOUT: 'an OVSDB request got no reply in time',
  SLUICE_E_OVSDB_RPC: 'ovsdb-server answered a JSON-RPC request with an error (e.g. unknown database)',
  SLUICE_E_OVSDB_TRANSACTION: 'an OVSDB transaction failed (the error names the failing op index and cause)',
  SLUICE_E_OVSDB_PROTOCOL: 'ovsdb-server sent something that is not valid RFC 7047 JSON-RPC',
  SLUICE_E_OVSDB_VALUE: 'a value does not fit its OVSDB column type, or names an unknown table or column',
  SLUICE_E_OVSDB_CLOSED: 'the OVSDB client was closed',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

/** One problem found in input, with the path where it was found (e.g. `loadBalancers[0].backends[2].port`). */
export interface Issue {
  readonly code: string;
  readonly path: string;
  readonly message: string;
}

export class SluiceError extends Error {
  readonly code: ErrorCode;
  readonly issues: readonly Issue[];
  constructor(code: ErrorCode, message: string, issues: readonly Issue[] = []) {
    super(message);
    this.name = 'SluiceError';
    this.code = code;
    this.issues = issues;
  }
}
