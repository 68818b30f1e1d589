// Every failure sluice reports has a stable code (SLUICE_E_*), listed in docs/errors.md.
// test/unit/errors.test.ts checks that the docs list every code defined here.

export const ERROR_CODES = {
  SLUICE_E_CONFIG_PARSE: 'the config file is not valid YAML or JSON',
  SLUICE_E_CONFIG_INVALID: 'the config does not satisfy the schema or a semantic rule (details list every problem)',
  SLUICE_E_IO: 'a file or process could not be read, written or run',
  SLUICE_E_USAGE: 'a command was called with wrong arguments',
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
