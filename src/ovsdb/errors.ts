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
