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
 * The result is each input's best hypothesis (prefix + new tokens, EOS included), padded with the
 * pad token to the longest, as transformers returns `sequences`.
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
}

/**
 * One decoder step over `rows = batch x numBeams` rows (row = input * numBeams + beam). `reorder` is
 * null on the first call (no cache yet; `tokens` holds the whole prefix per row); later it gives,
 * per row, the cache row to continue from, and `tokens` holds one new token per row. Returns the
 * logits of the last position, row-major [rows, vocab].
 */
export type DecoderStep = (tokens: readonly (readonly number[])[], reorder: Int32Array | null) => Promise<{ logits: Float32Array; vocab: number }>;

const f32 = Math.fround;
const NEG = -1e9;

/** out[at + v] = float32(float32(log_softmax(row)[v]) + score): one beam's accumulated scores. */
function accumulate(logits: Float32Array, offset: number, vocab: number, score: number, out: Float32Array, at: number): void {
  let max = Number.NEGATIVE_INFINITY;
  for (let v = 0; v < vocab; v++) { const x = logits[offset + v] as number; if (x > max) max = x; }
  let sum = 0;
  for (let v = 0; v < vocab; v++) sum += Math.exp((logits[offset + v] as number) - max);
  const shift = max + Math.log(sum);
  for (let v = 0; v < vocab; v++) out[at + v] = f32(f32((logits[offset + v] as number) - shift) + score);
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

interface Hypothesis { tokens: number[]; score: number; finished: boolean }

/**
 * Run beam search for `batch` inputs that all start from `prefix` (decoder start token + prompt).
 * Returns one sequence per input (prefix + new tokens), padded to the longest with `pad`.
 */
export async function beamSearch(batch: number, prefix: readonly number[], cfg: BeamSearchConfig, step: DecoderStep): Promise<number[][]> {
  const k = cfg.numBeams;
  const prefixLen = prefix.length;
  const maxLength = prefixLen + cfg.maxNewTokens;
  const eos = new Set(cfg.eos);
  const keep = Math.max(2, 1 + cfg.eos.length) * k;
  const lp = cfg.lengthPenalty;
  // Per input: running beams (new tokens + score), kept hypotheses, "improvement still possible".
  const running = Array.from({ length: batch }, () => Array.from({ length: k }, (_, j) => ({ tokens: [] as number[], score: j === 0 ? 0 : NEG })));
  const kept: Hypothesis[][] = Array.from({ length: batch }, () => Array.from({ length: k }, () => ({ tokens: [], score: NEG, finished: false })));
  const unsatisfied = new Array<boolean>(batch).fill(true);
  let tokens: number[][] = Array.from({ length: batch * k }, () => [...prefix]);
  let reorder: Int32Array | null = null;
  let curLen = prefixLen;
  let acc = new Float32Array(0);
  for (;;) {
    const { logits, vocab } = await step(tokens, reorder);
    const nextReorder = new Int32Array(batch * k);
    const nextTokens: number[][] = [];
    if (acc.length !== k * vocab) acc = new Float32Array(k * vocab);
    let allHit = true;
    for (let b = 0; b < batch; b++) {
      // Accumulated scores over beams x vocab, then the top `keep` continuations.
      const beams = running[b] as { tokens: number[]; score: number }[];
      for (let j = 0; j < k; j++) accumulate(logits, (b * k + j) * vocab, vocab, (beams[j] as { score: number }).score, acc, j * vocab);
      const top = topK(acc, keep);
      const cands = top.map((flat) => {
        const src = Math.floor(flat / vocab);
        const token = flat % vocab;
        const hit = eos.has(token) || curLen + 1 >= maxLength;
        return { src, tokens: [...(beams[src] as { tokens: number[] }).tokens, token], score: acc[flat] as number, hit };
      });
      if (cands.some((c) => !c.hit)) allHit = false;
      // Running beams for the next step: the best continuations that did not finish.
      const runScores = cands.map((c) => (c.hit ? f32(c.score + NEG) : c.score));
      const next = topK(runScores, k);
      running[b] = next.map((i) => ({ tokens: (cands[i] as { tokens: number[] }).tokens, score: runScores[i] as number }));
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
      kept[b] = topK(merged.map((h) => h.score), k).map((i) => merged[i] as Hypothesis);
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
  const best = kept.map((hyps) => (hyps[0] as Hypothesis).tokens);
  const len = Math.max(...best.map((t) => t.length));
  return best.map((t) => [...prefix, ...t, ...new Array<number>(len - t.length).fill(cfg.pad)]);
}
