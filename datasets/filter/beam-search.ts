/**
 * Beam search with the semantics of Hugging Face transformers' `generate(num_beams=k)` (4.57's
 * vectorised `_beam_search`, no sampling, one returned sequence per input), independent of the model:
 * the caller supplies one decoder step over `batch x beams` rows with a key/value cache.
 *
 * Per input and step, as transformers does it:
 * - log_softmax of the last logits (float32) plus each running beam's score; the top
 *   `max(2, 1 + #eos) x beams` continuations over beams x vocab (at step one only beam 0 is live);
 * - a continuation "finishes" when its token is an EOS or the sequence reaches max length; of the
 *   top `beams` continuations, the finished ones compete with the kept hypotheses on
 *   `score / generated_length ** length_penalty`; the best `beams` unfinished continuations run on;
 * - `early_stopping`: true stops an input once `beams` hypotheses are kept; false (default) stops when
 *   the best running score divided by the current length cannot beat the worst kept one; "never"
 *   uses the max length instead (when length_penalty > 0);
 * - the loop ends when no input can improve, or every continuation finished (max length).
 * The result is each input's best hypothesis (prefix + new tokens, EOS included), or its
 * `numReturnSequences` best ones (best first, input-major), padded with the pad token to the longest,
 * as transformers returns `sequences`.
 *
 * Scores are kept in float32 (Math.fround) like PyTorch's, including the -1e9 masks.
 */

/** Generation settings (transformers' GenerationConfig names in comments). */
export interface BeamSearchConfig {
  /** num_beams (>= 1). */
  numBeams: number;
  /** max_new_tokens. */
  maxNewTokens: number;
  /** eos_token_id (may be several; empty: only max length ends a hypothesis). */
  eos: readonly number[];
  /** pad_token_id: fills sequences shorter than the longest in the batch. */
  pad: number;
  /** length_penalty (default 1.0): exponent of the generated length dividing a finished score. */
  lengthPenalty: number;
  /** early_stopping (default false). */
  earlyStopping: boolean | 'never';
  /** num_return_sequences (default 1, at most numBeams): the best finished hypotheses per input, best first. */
  numReturnSequences?: number;
}

/**
 * One decoder step over `rows = batch x numBeams` rows (row = input * numBeams + beam). `reorder` is
 * null on the first call (no cache yet; `tokens` holds the whole prefix per row); later it gives,
 * per row, the cache row to continue from, and `tokens` holds one new token per row. Returns the
 * logits of the last position, row-major [rows, vocab].
 */
export type DecoderStep = (
  tokens: readonly (readonly number[])[],
  reorder: Int32Array | null,
) => Promise<{ logits: Float32Array; vocab: number }>;

const f32 = Math.fround;
const NEG = -1e9;

/** log(sum(exp(row))) of one logits row, in double precision (log_softmax(row)[v] = row[v] - this). */
function logSumExp(logits: Float32Array, offset: number, vocab: number): number {
  let max = Number.NEGATIVE_INFINITY;
  for (let v = 0; v < vocab; v++) {
    const x = logits[offset + v] as number;
    if (x > max) max = x;
  }
  let sum = 0;
  for (let v = 0; v < vocab; v++) sum += Math.exp((logits[offset + v] as number) - max);
  return max + Math.log(sum);
}

/** The best continuations so far, best first: flat index (beam * vocab + token) and score. */
export class TopContinuations {
  readonly idx: Int32Array;
  readonly vals: Float64Array;
  size = 0;
  private worst = Number.NEGATIVE_INFINITY; // vals[keep - 1] once full

  constructor(readonly keep: number) {
    this.idx = new Int32Array(keep);
    this.vals = new Float64Array(keep);
  }

  clear(): void {
    this.size = 0;
    this.worst = Number.NEGATIVE_INFINITY;
  }

  /**
   * Offer one beam's continuations, scored float32(float32(logits[v] - shift) + score), tokens in
   * order (flat index base + v). Ties keep the earlier index, as a stable sort over all offers would.
   * The score never decreases with the logit, so once a logit x scored no better than the worst kept,
   * later logits <= x are skipped without scoring them.
   */
  offer(logits: Float32Array, offset: number, vocab: number, shift: number, score: number, base: number): void {
    const { keep, idx, vals } = this;
    let n = this.size,
      worst = this.worst,
      xLow = Number.NaN; // NaN: nothing skipped yet (x <= NaN is false)
    for (let v = 0; v < vocab; v++) {
      const x = logits[offset + v] as number;
      if (x <= xLow) continue;
      const s = f32(f32(x - shift) + score);
      if (n === keep && !(s > worst)) {
        xLow = x;
        continue;
      }
      // Insert in order; when the list is full the last entry drops out.
      let p = n === keep ? keep - 1 : n++;
      while (p > 0 && s > (vals[p - 1] as number)) {
        vals[p] = vals[p - 1] as number;
        idx[p] = idx[p - 1] as number;
        p--;
      }
      vals[p] = s;
      idx[p] = base + v;
      if (n === keep) worst = vals[keep - 1] as number;
    }
    this.size = n;
    this.worst = worst;
  }
}

/**
 * One input's `top.keep` best continuations over its beams x vocab: log_softmax of each beam's row
 * (double precision, rounded to float32) plus the beam's running score (float32). The same values
 * and order as scoring all beams x vocab into a float32 array and taking its stable top-k, without
 * that array.
 */
export function topContinuations(
  logits: Float32Array,
  firstRow: number,
  scores: readonly number[],
  vocab: number,
  top: TopContinuations,
): void {
  top.clear();
  for (let j = 0; j < scores.length; j++) {
    const offset = (firstRow + j) * vocab;
    top.offer(logits, offset, vocab, logSumExp(logits, offset, vocab), scores[j] as number, j * vocab);
  }
}

/** Indices of the `k` largest values, best first (ties: lower index first, as a stable sort). */
function topK(values: ArrayLike<number>, k: number): number[] {
  const idx: number[] = [];
  for (let i = 0; i < values.length; i++) {
    const v = values[i] as number;
    if (idx.length === k && !(v > (values[idx[k - 1] as number] as number))) continue;
    let p = idx.length === k ? k - 1 : idx.length;
    while (p > 0 && v > (values[idx[p - 1] as number] as number)) p--;
    idx.splice(p, 0, i);
    if (idx.length > k) idx.pop();
  }
  return idx;
}

interface Hypothesis {
  tokens: number[];
  score: number;
  finished: boolean;
}

/**
 * Run beam search for `batch` inputs that all start from `prefix` (decoder start token + prompt).
 * Returns `numReturnSequences` (default 1) sequences per input, input-major and best first (prefix +
 * new tokens), padded to the longest with `pad`.
 */
export async function beamSearch(
  batch: number,
  prefix: readonly number[],
  cfg: BeamSearchConfig,
  step: DecoderStep,
): Promise<number[][]> {
  const k = cfg.numBeams;
  const ret = cfg.numReturnSequences ?? 1;
  if (!Number.isInteger(ret) || ret < 1 || ret > k)
    throw new RangeError(`numReturnSequences is ${ret}; it must be an integer from 1 to numBeams (${k})`);
  const prefixLen = prefix.length;
  const maxLength = prefixLen + cfg.maxNewTokens;
  const eos = new Set(cfg.eos);
  const keep = Math.max(2, 1 + cfg.eos.length) * k;
  const lp = cfg.lengthPenalty;
  // Per input: running beams (new tokens + score), kept hypotheses, "improvement still possible".
  const running = Array.from({ length: batch }, () =>
    Array.from({ length: k }, (_, j) => ({ tokens: [] as number[], score: j === 0 ? 0 : NEG })),
  );
  const kept: Hypothesis[][] = Array.from({ length: batch }, () =>
    Array.from({ length: k }, () => ({ tokens: [], score: NEG, finished: false })),
  );
  const unsatisfied = new Array<boolean>(batch).fill(true);
  let tokens: number[][] = Array.from({ length: batch * k }, () => [...prefix]);
  let reorder: Int32Array | null = null;
  let curLen = prefixLen;
  const top = new TopContinuations(keep);
  for (;;) {
    const { logits, vocab } = await step(tokens, reorder);
    const nextReorder = new Int32Array(batch * k);
    const nextTokens: number[][] = [];
    let allHit = true;
    for (let b = 0; b < batch; b++) {
      // The top `keep` continuations over beams x vocab of accumulated scores.
      const beams = running[b] as { tokens: number[]; score: number }[];
      topContinuations(
        logits,
        b * k,
        beams.map((beam) => beam.score),
        vocab,
        top,
      );
      const cands = Array.from({ length: top.size }, (_, i) => {
        const flat = top.idx[i] as number;
        const src = Math.floor(flat / vocab);
        const token = flat % vocab;
        const hit = eos.has(token) || curLen + 1 >= maxLength;
        return {
          src,
          tokens: [...(beams[src] as { tokens: number[] }).tokens, token],
          score: top.vals[i] as number,
          hit,
        };
      });
      if (cands.some((c) => !c.hit)) allHit = false;
      // Running beams for the next step: the best continuations that did not finish.
      const runScores = cands.map((c) => (c.hit ? f32(c.score + NEG) : c.score));
      const next = topK(runScores, k);
      running[b] = next.map((i) => ({
        tokens: (cands[i] as { tokens: number[] }).tokens,
        score: runScores[i] as number,
      }));
      next.forEach((i, j) => {
        const c = cands[i] as { src: number; tokens: number[] };
        nextReorder[b * k + j] = b * k + c.src;
        nextTokens.push([c.tokens[c.tokens.length - 1] as number]);
      });
      // Finished continuations among the top `k` compete with the kept hypotheses.
      const hyps = kept[b] as Hypothesis[];
      const full = hyps.every((h) => h.finished) && cfg.earlyStopping === true;
      const denom = f32((curLen + 1 - prefixLen) ** lp);
      const merged: Hypothesis[] = [...hyps];
      cands.forEach((c, i) => {
        const finished = c.hit && i < k;
        let s = f32(c.score / denom);
        if (full) s = f32(s + NEG);
        if (!unsatisfied[b]) s = f32(s + NEG);
        if (!finished) s = f32(s + NEG);
        merged.push({ tokens: c.tokens, score: s, finished });
      });
      kept[b] = topK(
        merged.map((h) => h.score),
        k,
      ).map((i) => merged[i] as Hypothesis);
    }
    curLen++;
    let anyUnsatisfied = false;
    let allFinished = true;
    for (let b = 0; b < batch; b++) {
      const hyps = kept[b] as Hypothesis[];
      const bestLen = cfg.earlyStopping === 'never' && lp > 0 ? maxLength - prefixLen : curLen - prefixLen;
      const best = f32(((running[b] as { score: number }[])[0] as { score: number }).score / f32(bestLen ** lp));
      const minKept = Math.min(...hyps.map((h) => h.score));
      unsatisfied[b] = (unsatisfied[b] as boolean) && hyps.some((h) => best > (h.finished ? minKept : NEG));
      anyUnsatisfied ||= unsatisfied[b] as boolean;
      allFinished &&= hyps.every((h) => h.finished);
    }
    const openBeam = !(allFinished && cfg.earlyStopping === true);
    if (!(anyUnsatisfied && openBeam && !allHit)) break;
    tokens = nextTokens;
    reorder = nextReorder;
  }
  // kept is sorted best first (topK): transformers' `sequences[:, :num_return_sequences]`.
  const best = kept.flatMap((hyps) => hyps.slice(0, ret).map((h) => h.tokens));
  const len = Math.max(...best.map((t) => t.length));
  return best.map((t) => [...prefix, ...t, ...new Array<number>(len - t.length).fill(cfg.pad)]);
}
