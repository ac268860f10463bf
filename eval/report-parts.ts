/** Building blocks of the run report: its stylesheet, hash display and a JSON-to-HTML renderer. */
import { escapeHtml as esc } from './svg-chart.js';

const HEX_HASH = /^(sha256:)?[0-9a-f]{40,64}$/;

/** A hash shown as its first 12 characters, full value on hover. */
export function shortHash(h: string): string {
  if (!h) return '<span class="muted">-</span>';
  const bare = h.replace(/^sha256:/, '');
  return `<code class="hash" title="${esc(h)}">${esc(bare.slice(0, 12))}${bare.length > 12 ? '…' : ''}</code>`;
}

function scalar(v: unknown): string {
  if (v === undefined) return '<span class="muted">-</span>';
  if (v === null) return '<span class="muted">null</span>';
  if (typeof v === 'string') return HEX_HASH.test(v) ? shortHash(v) : esc(v);
  if (typeof v === 'number') return `<span class="num">${esc(String(v))}</span>`;
  if (typeof v === 'boolean') return `<span class="num">${v}</span>`;
  return esc(JSON.stringify(v));
}

function isScalar(v: unknown): boolean {
  return v === null || v === undefined || typeof v !== 'object';
}

/**
 * Render plain JSON as nested tables: objects as key/value tables, arrays of flat objects as
 * tables with one column per key, deeper structures in collapsible sections.
 */
export function renderJson(v: unknown, depth = 0): string {
  if (isScalar(v)) return scalar(v);
  if (Array.isArray(v)) {
    if (v.length === 0) return '<span class="muted">(none)</span>';
    if (v.every(isScalar)) return v.map(scalar).join(', ');
    const objs = v.every((x) => x !== null && typeof x === 'object' && !Array.isArray(x))
      ? (v as Record<string, unknown>[])
      : null;
    const keys = objs ? [...new Set(objs.flatMap((o) => Object.keys(o)))] : [];
    if (
      objs &&
      keys.length <= 8 &&
      objs.every((o) => Object.values(o).every((x) => isScalar(x) || (Array.isArray(x) && x.every(isScalar))))
    ) {
      return (
        `<div class="scroll"><table class="json"><thead><tr>${keys.map((k) => `<th>${esc(k)}</th>`).join('')}</tr></thead><tbody>` +
        objs.map((o) => `<tr>${keys.map((k) => `<td>${renderJson(o[k], depth + 1)}</td>`).join('')}</tr>`).join('') +
        '</tbody></table></div>'
      );
    }
    return `<ol class="json">${v.map((x) => `<li>${renderJson(x, depth + 1)}</li>`).join('')}</ol>`;
  }
  const entries = Object.entries(v as Record<string, unknown>);
  if (entries.length === 0) return '<span class="muted">{}</span>';
  const body = `<table class="kv json">${entries.map(([k, x]) => `<tr><th>${esc(k)}</th><td>${renderJson(x, depth + 1)}</td></tr>`).join('')}</table>`;
  return depth >= 2 ? `<details><summary>${entries.length} fields</summary>${body}</details>` : body;
}

export const REPORT_CSS = `
:root { --fg: #18181b; --muted: #71717a; --line: #e4e4e7; --bg: #fafafa; --card: #fff; --accent: #2563eb; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg); font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 20px 40px; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 0 0 10px; }
section { margin: 22px 0; }
code, .hash { font: 12px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.muted { color: var(--muted); } .bad { color: #dc2626; font-weight: 600; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); gap: 12px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; }
.card .k { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.card .v { font-size: 22px; font-weight: 600; } .card small { font-size: 12px; font-weight: 400; color: var(--muted); }
.decision { background: var(--card); border: 1px solid var(--line); border-left: 5px solid var(--muted); border-radius: 8px; padding: 12px 16px; }
.decision.stop { border-left-color: #16a34a; } .decision.go { border-left-color: var(--accent); }
.decision p { margin: 4px 0; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(540px, 1fr)); gap: 12px; }
.chart-box { margin: 0; background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 6px; }
.chart { width: 100%; height: auto; display: block; }
.chart .plot { fill: #fff; stroke: var(--line); } .chart .grid { stroke: #f0f0f2; } .chart .axis { stroke: #a1a1aa; }
.chart .tick { font-size: 11px; fill: #52525b; } .chart .label { font-size: 12px; fill: #3f3f46; }
.chart .chart-title { font-size: 13px; font-weight: 600; fill: var(--fg); } .chart .legend { font-size: 11px; fill: #3f3f46; }
.chart .empty { font-size: 13px; fill: var(--muted); }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; background: var(--card); border: 1px solid var(--line); border-radius: 8px; font-size: 13px; }
th, td { padding: 6px 10px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
thead th { background: #f4f4f5; font-weight: 600; white-space: nowrap; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.best td { background: #f0fdf4; } tr.mismatch td { color: #92400e; }
table.kv th { width: 1%; white-space: nowrap; color: #3f3f46; background: #fafafa; font-weight: 500; }
table.json { font-size: 12px; } table.json table { border: none; }
ol.json { margin: 0; padding-left: 20px; }
.pill { display: inline-block; padding: 0 7px; border-radius: 999px; background: #e4e4e7; font-size: 11px; font-weight: 600; }
.pill.best { background: #dcfce7; color: #166534; } .pill.warn { background: #fef3c7; color: #92400e; }
.grids { display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); gap: 12px; }
.grid-fig { margin: 0; background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 10px; }
.grid-fig img { width: 100%; height: auto; image-rendering: pixelated; display: block; border-radius: 4px; }
.grid-fig figcaption { margin-top: 6px; font-size: 13px; }
.prompt-box { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 8px 14px; margin-bottom: 12px; }
ol.prompts { columns: 3; column-gap: 28px; margin: 6px 0 0; padding-left: 22px; color: #52525b; font-size: 12px; }
details summary { cursor: pointer; color: var(--accent); }
footer { margin-top: 30px; font-size: 12px; }
`;
