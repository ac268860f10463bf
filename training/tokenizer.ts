/**
 * Tokenizers turn captions into fixed-length id rows for the text encoder.
 *
 * `ByteTokenizer` is the default for small runs: UTF-8 bytes shifted by 3 (0 = pad, 1 = start,
 * 2 = end), so the vocabulary is 259 ids, nothing is downloaded and the same text always gives the
 * same ids. Captions longer than `maxTokens - 2` bytes are cut (on a byte, as CLIP cuts on a token).
 */

export interface TokenBatch {
  /** Row-major [batch, maxTokens] ids. */
  ids: Int32Array;
  /** 1 where a real token (start, text, end), 0 on padding; same layout as `ids`. */
  mask: Float32Array;
  batch: number;
  maxTokens: number;
}

/** What the text encoder needs from a tokenizer. */
export interface CaptionTokenizer {
  readonly name: string;
  readonly vocabSize: number;
  readonly maxTokens: number;
  encode(captions: readonly string[]): TokenBatch;
}

export const BYTE_PAD = 0;
export const BYTE_START = 1;
export const BYTE_END = 2;
const BYTE_OFFSET = 3;

export class ByteTokenizer implements CaptionTokenizer {
  readonly name = 'byte-v1';
  readonly vocabSize = 256 + BYTE_OFFSET;
  readonly maxTokens: number;
  private readonly encoder = new TextEncoder();

  constructor(maxTokens: number) {
    if (!Number.isInteger(maxTokens) || maxTokens < 2)
      throw new RangeError(`maxTokens must be an integer >= 2, got ${maxTokens}`);
    this.maxTokens = maxTokens;
  }

  encode(captions: readonly string[]): TokenBatch {
    const L = this.maxTokens;
    const ids = new Int32Array(captions.length * L);
    const mask = new Float32Array(captions.length * L);
    captions.forEach((caption, b) => {
      const bytes = this.encoder.encode(caption.normalize('NFC'));
      const n = Math.min(bytes.length, L - 2);
      const row = b * L;
      ids[row] = BYTE_START;
      for (let i = 0; i < n; i++) ids[row + 1 + i] = bytes[i]! + BYTE_OFFSET;
      ids[row + 1 + n] = BYTE_END;
      mask.fill(1, row, row + n + 2);
    });
    return { ids, mask, batch: captions.length, maxTokens: L };
  }

  /** Inverse of `encode` for one row (drops specials). */
  decode(ids: ArrayLike<number>): string {
    const bytes: number[] = [];
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      if (id === BYTE_END) break;
      if (id >= BYTE_OFFSET) bytes.push(id - BYTE_OFFSET);
    }
    return new TextDecoder().decode(Uint8Array.from(bytes));
  }
}
