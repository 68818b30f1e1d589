// Incremental framing of a JSON-RPC byte stream. ovsdb-server writes JSON objects back to back with no
// delimiter (RFC 7047 section 4: "The JSON-RPC protocol is used over a stream"), and a read may end anywhere,
// even inside a multi-byte UTF-8 character. JsonSplitter scans bytes, tracking string/escape state and
// brace/bracket depth, and hands back each complete top-level value's text. Pure: no I/O.
//
// Scanning bytes is safe for UTF-8: every byte of a multi-byte character is >= 0x80, so it never looks like
// `"`, `\`, `{`, `}`, `[` or `]`, and a value ends on a character boundary.

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const LBRACE = 0x7b;
const RBRACE = 0x7d;
const LBRACKET = 0x5b;
const RBRACKET = 0x5d;

function isJsonSpace(b: number): boolean {
  return b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d;
}

export class FramingError extends Error {
  override readonly name = 'FramingError';
}

export class JsonSplitter {
  readonly #maxBytes: number;
  /** Bytes of the value being assembled, from earlier chunks. */
  #parts: Buffer[] = [];
  #partsLength = 0;
  #depth = 0;
  #inString = false;
  #escape = false;

  /** `maxBytes` bounds one value (a peer that never closes its object must not exhaust memory). */
  constructor(maxBytes = 256 * 1024 * 1024) {
    this.#maxBytes = maxBytes;
  }

  /** True when bytes of an unfinished value are buffered. */
  get pending(): boolean {
    return this.#depth > 0;
  }

  /** Feeds one chunk; returns the text of every top-level value it completed, in order. */
  push(chunk: Uint8Array): string[] {
    const buf = Buffer.isBuffer(chunk)
      ? chunk
      : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    const out: string[] = [];
    let start = this.#depth > 0 ? 0 : -1;
    for (let i = 0; i < buf.length; i++) {
      const b = buf[i]!;
      if (this.#depth === 0) {
        if (isJsonSpace(b)) continue;
        if (b !== LBRACE && b !== LBRACKET) {
          throw new FramingError(`unexpected byte 0x${b.toString(16)} between JSON values`);
        }
        start = i;
        this.#depth = 1;
        continue;
      }
      if (this.#inString) {
        if (this.#escape) this.#escape = false;
        else if (b === BACKSLASH) this.#escape = true;
        else if (b === QUOTE) this.#inString = false;
        continue;
      }
      if (b === QUOTE) this.#inString = true;
      else if (b === LBRACE || b === LBRACKET) this.#depth++;
      else if (b === RBRACE || b === RBRACKET) {
        this.#depth--;
        if (this.#depth === 0) {
          const tail = buf.subarray(start, i + 1);
          const whole = this.#parts.length === 0 ? tail : Buffer.concat([...this.#parts, tail]);
          this.#parts = [];
          this.#partsLength = 0;
          out.push(whole.toString('utf8'));
          start = -1;
        }
      }
    }
    if (this.#depth > 0 && start >= 0) {
      const rest = buf.subarray(start);
      this.#partsLength += rest.length;
      if (this.#partsLength > this.#maxBytes) {
        throw new FramingError(`JSON value exceeds ${this.#maxBytes} bytes`);
      }
      // Copy: the caller may reuse its buffer.
      this.#parts.push(Buffer.from(rest));
    }
    return out;
  }

  reset(): void {
    this.#parts = [];
    this.#partsLength = 0;
    this.#depth = 0;
    this.#inString = false;
    this.#escape = false;
  }
}
