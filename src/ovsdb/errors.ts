// The one error class the OVSDB client throws. Codes are listed in src/model/errors.ts and docs/errors.md.

import { type ErrorCode, SluiceError } from '../model/errors.ts';

export interface OvsdbErrorFields {
  /** Index of the failing operation in the transaction (`ops.length` for a commit-time error). */
  readonly opIndex?: number;
  /** ovsdb-server's <error> string, e.g. "timed out", "constraint violation", "referential integrity violation". */
  readonly ovsdbError?: string;
  /** ovsdb-server's "details" string. */
  readonly details?: string;
  /** The JSON-RPC method of the failed request. */
  readonly method?: string;
}

/** The codes OvsdbError is thrown with (each listed in src/model/errors.ts). */
export const OVSDB_ERROR_CODES = [
  'SLUICE_E_OVSDB_CONNECT',
  'SLUICE_E_OVSDB_DISCONNECTED',
  'SLUICE_E_OVSDB_TIMEOUT',
  'SLUICE_E_OVSDB_RPC',
  'SLUICE_E_OVSDB_TRANSACTION',
  'SLUICE_E_OVSDB_PROTOCOL',
  'SLUICE_E_OVSDB_VALUE',
  'SLUICE_E_OVSDB_CLOSED',
] as const satisfies readonly ErrorCode[];

/** An OVSDB client failure: a runtime failure of the store, not bad input. */
export function isOvsdbErrorCode(code: ErrorCode): boolean {
  return (OVSDB_ERROR_CODES as readonly ErrorCode[]).includes(code);
}

export class OvsdbError extends SluiceError {
  readonly opIndex: number | undefined;
  readonly ovsdbError: string | undefined;
  readonly details: string | undefined;
  readonly method: string | undefined;
  constructor(code: ErrorCode, message: string, fields: OvsdbErrorFields = {}) {
    super(code, message);
    this.name = 'OvsdbError';
    this.opIndex = fields.opIndex;
    this.ovsdbError = fields.ovsdbError;
    this.details = fields.details;
    this.method = fields.method;
  }
}
