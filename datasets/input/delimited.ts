/**
 * Streaming CSV/TSV parser (RFC 4180): quoted fields, doubled quotes, delimiters and newlines inside
 * quotes, CRLF or LF line ends, a leading BOM. Feed text chunks with `push`, then call `end`.
 */
export class DelimitedParser {
  private field = '';
  private record: string[] = [];
  private inQuotes = false;
  /** A quote just closed inside a quoted field (next char decides: "" escape or end of field). */
  private quoteClosed = false;
  private started = false;
  private pendingCR = false;
  /** 1-based line of the input being read (for error messages). */
  private line = 1;

  constructor(private readonly delimiter: string) {
    if (delimiter.length !== 1)
      throw new TypeError(`delimiter must be one character, got ${JSON.stringify(delimiter)}`);
  }

  /** Parse a chunk; returns the records completed by it. */
  push(chunk: string): string[][] {
    const out: string[][] = [];
    let text = chunk;
    if (!this.started) {
      this.started = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    const d = this.delimiter;
    for (let i = 0; i < text.length; i++) {
      const c = text[i]!;
      if (this.pendingCR) {
        this.pendingCR = false;
        if (c === '\n') continue;
      }
      if (c === '\n' || c === '\r') this.line++;
      if (this.inQuotes) {
        if (this.quoteClosed) {
          this.quoteClosed = false;
          if (c === '"') {
            this.field += '"';
            continue;
          }
          this.inQuotes = false;
          if (c !== d && c !== '\n' && c !== '\r') {
            throw new SyntaxError(
              `line ${this.line}: a quoted field is followed by ${JSON.stringify(c)} instead of a delimiter or line end (a stray or unescaped quote)`,
            );
          }
          // fall through: the delimiter or line end is handled below
        } else if (c === '"') {
          this.quoteClosed = true;
          continue;
        } else {
          this.field += c;
          continue;
        }
      }
      if (c === d) {
        this.record.push(this.field);
        this.field = '';
      } else if (c === '\n' || c === '\r') {
        this.pendingCR = c === '\r';
        this.endRecord(out);
      } else if (c === '"' && this.field.length === 0) {
        this.inQuotes = true;
      } else {
        this.field += c;
      }
    }
    return out;
  }

  /** Flush the last record (a file need not end with a newline). */
  end(): string[][] {
    const out: string[][] = [];
    if (this.inQuotes && !this.quoteClosed)
      throw new SyntaxError(`unterminated quoted field at end of input (line ${this.line})`);
    this.inQuotes = false;
    this.quoteClosed = false;
    if (this.field.length > 0 || this.record.length > 0) this.endRecord(out);
    return out;
  }

  private endRecord(out: string[][]): void {
    this.record.push(this.field);
    this.field = '';
    const r = this.record;
    this.record = [];
    if (r.length === 1 && r[0] === '') return; // blank line
    out.push(r);
  }
}
