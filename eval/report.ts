/**
 * The static HTML report of a training run: loss and learning-rate curves, FID and CLIP score per
 * evaluation, the early-stopping decision, an evaluation table with each evaluation's protocol,
 * sample grids, and the lineage of the run's data. One self-contained HTML file (inline CSS and
 * SVG, no scripts, no network); sample grids are PNG files beside it, referenced by relative path,
 * so the report opens straight from disk.
 *
 * Input is a plain JSON-able object (RunReportInput), so an activity can build it from lineage and
 * metrics files and call writeRunReport.
 */
import type { ArtifactStorage, WrittenObject } from '../infra/storage.js';
import type { EarlyStoppingDecision } from './early-stopping.js';
import { escapeHtml as esc, lineChartSvg } from './svg-chart.js';
import { REPORT_CSS, renderJson, shortHash } from './report-parts.js';

/** How an evaluation was measured: numbers are only comparable when these match. */
export interface EvalProtocol {
  extractor: string;
  extractorSha256: string;
  sampleCount: number;
  seed: number;
  referenceStatsSha256: string;
  referenceSet?: string;
  /** e.g. "ddim, 50 steps, guidance 4.5". */
  sampler?: string;
  clipModel?: string;
  /** Reference images in the statistics (after the cap). */
  referenceCount?: number;
  featureDim?: number;
  /** The metric early stopping decides on. */
  metric?: string;
  /** KID estimator, subsets and seed. */
  kid?: string;
  /** How reference and generated images reach the extractor's input size. */
  resize?: string;
}

export interface ReportEvaluation {
  step: number;
  fid: number | null;
  /** Kernel Inception Distance (absent in records written before KID). */
  kid?: number | null;
  /** KID's details; `noiseStd` is the noise to expect at this sample count. */
  kidParts?: {
    noiseStd: number;
    noiseMethod: string;
    subsetStd?: number;
    subsetSize?: number;
    subsets?: number;
  } | null;
  /** The evaluation failed (message) or its stopping metric was not finite. */
  failed?: string | null;
  clipScore: number | null;
  protocol: EvalProtocol;
  /** Report-relative path of the sample grid PNG (see sample-grid.ts). */
  sampleGrid?: string | null;
  /** Prompts of the grid's images, in order. */
  samplePrompts?: string[];
}

export interface TrainingPoint {
  step: number;
  loss: number;
  lr: number;
  lrTextEncoder?: number;
}

export interface RunReportInput {
  runId: string;
  title?: string;
  /** ISO time the report was generated (passed in, so rendering is a pure function). */
  generatedAt: string;
  /** e.g. "running", "stopped early", "completed". */
  status?: string;
  /** Key facts shown at the top (dataset, model size, backend...). */
  summary?: Record<string, string | number | boolean | null>;
  training: TrainingPoint[];
  evaluations: ReportEvaluation[];
  earlyStopping?: Pick<
    EarlyStoppingDecision,
    'stop' | 'bestStep' | 'reason' | 'metric' | 'patience' | 'minDelta'
  > | null;
  /** The run's lineage (datasets, parents, hashes, params) as plain JSON. */
  lineage?: unknown;
}

const COLORS = {
  loss: '#2563eb',
  lr: '#059669',
  lrText: '#d97706',
  fid: '#dc2626',
  kid: '#0891b2',
  clip: '#7c3aed',
  best: '#16a34a',
};

/** The evaluation table's header cells. */
const TABLE_HEAD = [
  'Step',
  'KID (± noise)',
  'FID',
  'CLIP score',
  'Extractor (sha256)',
  'Samples',
  'Seed',
  'Reference stats (sha256)',
  'Sampler, resize, KID',
]
  .map((h) => `<th>${h}</th>`)
  .join('');

const PROTOCOL_DIFFERS =
  '<br><span class="pill warn" title="differs from the latest evaluation\'s protocol: not comparable">protocol differs</span>';

const FOOTER =
  'Kiln run report. FID: Frechet distance of feature statistics (float64; biased below the feature dimension); ' +
  "KID: unbiased MMD² with the cubic polynomial kernel (clean-fid's subsets); evaluations are comparable only " +
  'when extractor, reference statistics, sample count, seed and sampler match.';

const METRIC_TEXT: Record<string, string> = {
  fid: 'FID (lower is better)',
  kid: 'KID (lower is better)',
  clip_score: 'CLIP score (higher is better)',
};

/**
 * One sentence on the stopping metric's noise at the sample count used, from the latest evaluation
 * that measured it (KID: kidParts.noiseStd, see eval/kid.ts kidNoise).
 */
export function noiseStatement(evals: readonly ReportEvaluation[], metric: string, minDelta: number): string {
  const withNoise = [...evals].reverse().find((e) => e.kidParts && Number.isFinite(e.kidParts.noiseStd));
  if (metric === 'kid') {
    if (!withNoise) return 'KID noise: not measured yet.';
    const sd = withNoise.kidParts!.noiseStd;
    const cmp =
      minDelta >= 2 * sd
        ? 'above twice the noise: an improvement that passes it is unlikely to be noise'
        : `below twice the noise (${fmtNum(2 * sd)}): some "improvements" may be noise`;
    return (
      `KID noise at ${withNoise.protocol.sampleCount} samples: std ≲ ${fmtNum(sd)} between evaluations of the same ` +
      `model (${withNoise.kidParts!.noiseMethod}; an upper-side estimate). min_delta ${minDelta} is ${cmp}.`
    );
  }
  if (metric === 'fid') {
    const p = evals.at(-1)?.protocol;
    const dimNote =
      p?.featureDim && p.sampleCount < p.featureDim
        ? ` ${p.sampleCount} samples is below the feature dimension ${p.featureDim}: ` +
          'FID is strongly biased and rank-deficient here; prefer KID.'
        : '';
    const kidNote = withNoise ? ` KID noise at the same samples: std ≲ ${fmtNum(withNoise.kidParts!.noiseStd)}.` : '';
    return (
      'FID noise is not estimated per evaluation (see eval/architecture.md, "FID\'s bias", ' +
      `for its spread at 256 / 1k / 5k / 10k samples).${dimNote}${kidNote}`
    );
  }
  return 'CLIP score noise is not estimated.';
}

function fmtNum(v: number): string {
  return String(+v.toPrecision(3));
}

function protocolKey(p: EvalProtocol): string {
  return [
    p.extractorSha256,
    p.referenceStatsSha256,
    p.sampleCount,
    p.seed,
    p.sampler ?? '',
    p.resize ?? '',
    p.kid ?? '',
  ].join('|');
}

function num(v: number | null | undefined, digits = 4): string {
  if (v === null || v === undefined) return '<span class="muted">-</span>';
  if (!Number.isFinite(v)) return `<span class="bad">${esc(String(v))}</span>`;
  return esc(Math.abs(v) >= 1000 ? v.toFixed(1) : String(+v.toPrecision(digits)));
}

/** Render the report to an HTML string (pure). */
export function renderRunReport(r: RunReportInput): string {
  const title = r.title ?? `Training run ${r.runId}`;
  const evals = [...r.evaluations].sort((a, b) => a.step - b.step);
  const latest = evals.at(-1);
  const latestKey = latest ? protocolKey(latest.protocol) : '';
  const es = r.earlyStopping ?? null;
  const finite = (v: number | null): v is number => v !== null && Number.isFinite(v);
  const fids = evals.filter((e) => finite(e.fid));
  const bestFid = fids.length ? fids.reduce((a, b) => (b.fid! < a.fid! ? b : a)) : null;
  const kids = evals.filter((e) => finite(e.kid ?? null));
  const bestKid = kids.length ? kids.reduce((a, b) => (b.kid! < a.kid! ? b : a)) : null;
  const clips = evals.filter((e) => finite(e.clipScore));
  const bestClip = clips.length ? clips.reduce((a, b) => (b.clipScore! > a.clipScore! ? b : a)) : null;
  const lastStep = Math.max(r.training.at(-1)?.step ?? 0, latest?.step ?? 0);

  const cards = [
    ['Steps trained', String(lastStep)],
    ['Best KID', bestKid ? `${num(bestKid.kid)} <small>at step ${bestKid.step}</small>` : num(null)],
    ['Best FID', bestFid ? `${num(bestFid.fid)} <small>at step ${bestFid.step}</small>` : num(null)],
    ['Latest FID', latest ? `${num(latest.fid)} <small>at step ${latest.step}</small>` : num(null)],
    ['Best CLIP score', bestClip ? `${num(bestClip.clipScore)} <small>at step ${bestClip.step}</small>` : num(null)],
    ['Evaluations', String(evals.length)],
  ]
    .map(([k, v]) => `<div class="card"><div class="k">${k}</div><div class="v">${v}</div></div>`)
    .join('');

  const failedCount = evals.filter((e) => e.failed).length;
  const esBox = es
    ? `<section class="decision ${es.stop ? 'stop' : 'go'}"><h2>Early stopping: ${es.stop ? 'stop' : 'continue'}</h2>` +
      `<p>${esc(es.reason)}</p><p class="muted">Metric ${esc(METRIC_TEXT[es.metric] ?? es.metric)}, ` +
      `patience ${es.patience}, min_delta ${es.minDelta}.` +
      (es.bestStep !== null ? ` Best checkpoint: <b>step ${es.bestStep}</b>.` : '') +
      (failedCount ? ` Failed evaluations (${failedCount}) count as no improvement.` : '') +
      '</p>' +
      `<p class="noise">${esc(noiseStatement(evals, es.metric, es.minDelta))}</p></section>`
    : '<section class="decision"><h2>Early stopping</h2><p class="muted">No decision recorded.</p></section>';

  const bestMarker =
    es?.bestStep !== null && es?.bestStep !== undefined
      ? [{ x: es.bestStep, label: `best ${es.bestStep}`, color: COLORS.best }]
      : [];
  const lrSeries = [{ name: 'denoiser LR', points: r.training.map((p) => [p.step, p.lr] as const), color: COLORS.lr }];
  if (r.training.some((p) => p.lrTextEncoder !== undefined)) {
    lrSeries.push({
      name: 'text encoder LR',
      points: r.training.map((p) => [p.step, p.lrTextEncoder ?? NaN] as const),
      color: COLORS.lrText,
    });
  }
  const charts = [
    lineChartSvg({
      title: 'Training loss',
      xLabel: 'step',
      yLabel: 'loss',
      series: [{ name: 'loss', points: r.training.map((p) => [p.step, p.loss] as const), color: COLORS.loss }],
    }),
    lineChartSvg({
      title: 'Learning rate',
      xLabel: 'step',
      yLabel: 'learning rate (log)',
      logY: true,
      series: lrSeries.map((s, i) => ({ ...s, dashed: i > 0 })),
    }),
    lineChartSvg({
      title: 'KID per evaluation (lower is better)',
      xLabel: 'step',
      yLabel: 'KID',
      markersX: es?.metric === 'kid' ? bestMarker : [],
      series: [
        { name: 'KID', points: evals.map((e) => [e.step, e.kid ?? NaN] as const), color: COLORS.kid, markers: true },
      ],
    }),
    lineChartSvg({
      title: 'FID per evaluation (lower is better)',
      xLabel: 'step',
      yLabel: 'FID',
      markersX: es?.metric === 'fid' ? bestMarker : [],
      series: [
        { name: 'FID', points: evals.map((e) => [e.step, e.fid ?? NaN] as const), color: COLORS.fid, markers: true },
      ],
    }),
    lineChartSvg({
      title: 'CLIP score per evaluation (higher is better)',
      xLabel: 'step',
      yLabel: 'CLIP score',
      markersX: es?.metric === 'clip_score' ? bestMarker : [],
      series: [
        {
          name: 'CLIP score',
          points: evals.map((e) => [e.step, e.clipScore ?? NaN] as const),
          color: COLORS.clip,
          markers: true,
        },
      ],
    }),
  ]
    .map((svg) => `<figure class="chart-box">${svg}</figure>`)
    .join('');

  const rows = evals
    .map((e) => {
      const p = e.protocol;
      const mismatch = protocolKey(p) !== latestKey;
      const best = es?.bestStep === e.step;
      const noise =
        e.kidParts && Number.isFinite(e.kidParts.noiseStd)
          ? `<br><small class="muted">± ${num(e.kidParts.noiseStd, 2)}</small>`
          : '';
      return (
        `<tr class="${best ? 'best' : ''}${mismatch ? ' mismatch' : ''}"><td>${e.step}${best ? ' <span class="pill best">best</span>' : ''}` +
        `${e.failed ? `<br><span class="pill warn" title="${esc(e.failed)}">failed</span>` : ''}</td>` +
        `<td class="n">${num(e.kid ?? null)}${noise}</td><td class="n">${num(e.fid)}</td><td class="n">${num(e.clipScore)}</td>` +
        `<td>${esc(p.extractor)}<br>${shortHash(p.extractorSha256)}</td><td class="n">${p.sampleCount}</td><td class="n">${p.seed}</td>` +
        `<td>${shortHash(p.referenceStatsSha256)}${p.referenceSet ? `<br><span class="muted">${esc(p.referenceSet)}</span>` : ''}</td>` +
        `<td>${esc(p.sampler ?? '')}${p.resize ? `<br><span class="muted">${esc(p.resize)}</span>` : ''}` +
        (p.kid ? `<br><span class="muted">KID: ${esc(p.kid)}</span>` : '') +
        (mismatch ? PROTOCOL_DIFFERS : '') +
        '</td></tr>'
      );
    })
    .join('');
  const table = evals.length
    ? `<div class="scroll"><table><thead><tr>${TABLE_HEAD}</tr></thead><tbody>${rows}</tbody></table></div>`
    : '<p class="muted">No evaluations yet.</p>';

  const withGrid = [...evals].reverse().filter((e) => e.sampleGrid);
  const promptLists = withGrid.map((e) => JSON.stringify(e.samplePrompts ?? []));
  const sharedPrompts =
    withGrid.length > 0 && promptLists.every((p) => p === promptLists[0]) ? (withGrid[0]!.samplePrompts ?? []) : null;
  const promptList = (ps: string[]) => `<ol class="prompts">${ps.map((t) => `<li>${esc(t)}</li>`).join('')}</ol>`;
  const grids = withGrid
    .map(
      (e) =>
        `<figure class="grid-fig"><img src="${esc(e.sampleGrid!)}" alt="samples at step ${e.step}" loading="lazy">` +
        `<figcaption><b>Step ${e.step}</b>${es?.bestStep === e.step ? ' <span class="pill best">best</span>' : ''}` +
        `<br>KID ${num(e.kid ?? null)} · FID ${num(e.fid)} · CLIP score ${num(e.clipScore)}` +
        (!sharedPrompts && e.samplePrompts?.length
          ? `<details><summary>prompts</summary>${promptList(e.samplePrompts)}</details>`
          : '') +
        '</figcaption></figure>',
    )
    .join('');
  const samples = grids
    ? (sharedPrompts?.length
        ? '<details class="prompt-box" open><summary>Prompts, in grid order (left to right, top to bottom); ' +
          `the same prompts and seeds at every evaluation</summary>${promptList(sharedPrompts)}</details>`
        : '') + `<div class="grids">${grids}</div>`
    : '<p class="muted">No sample grids yet.</p>';

  const summary =
    r.summary && Object.keys(r.summary).length
      ? `<table class="kv">${Object.entries(r.summary)
          .map(
            ([k, v]) =>
              `<tr><th>${esc(k)}</th><td>${v === null ? '<span class="muted">-</span>' : esc(String(v))}</td></tr>`,
          )
          .join('')}</table>`
      : '';

  const statusPill = r.status ? ` <span class="pill">${esc(r.status)}</span>` : '';
  const lineage = r.lineage === undefined ? '<p class="muted">No lineage recorded.</p>' : renderJson(r.lineage);
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title><style>${REPORT_CSS}</style></head>
<body><main>
<header><h1>${esc(title)}</h1><p class="muted">Run <code>${esc(r.runId)}</code>${statusPill} - report generated ${esc(r.generatedAt)}</p></header>
<section class="cards">${cards}</section>
${esBox}
${summary ? `<section><h2>Run</h2>${summary}</section>` : ''}
<section><h2>Curves</h2><div class="charts">${charts}</div></section>
<section><h2>Evaluations</h2>${table}</section>
<section><h2>Samples</h2>${samples}</section>
<section><h2>Lineage</h2>${lineage}</section>
<footer class="muted">${FOOTER}</footer>
</main></body></html>
`;
}

/** Render and write `<reportDirUri>/index.html` atomically. */
export async function writeRunReport(
  storage: ArtifactStorage,
  reportDirUri: string,
  input: RunReportInput,
): Promise<WrittenObject> {
  return storage.writeAtomic(storage.child(reportDirUri, 'index.html'), renderRunReport(input));
}
