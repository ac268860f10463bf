/**
 * Inline SVG line charts for the run report: no scripts, no external assets, readable when the
 * HTML file is opened straight from disk. Long series are decimated to at most ~2 x maxPoints
 * points keeping each bucket's min and max, so loss spikes stay visible.
 */

export interface ChartSeries {
  name: string;
  /** [x, y] pairs; non-finite y values leave a gap. */
  points: readonly (readonly [number, number])[];
  color: string;
  /** Draw a dot at every point (for sparse series such as evaluations). */
  markers?: boolean;
  /** Dashed line (e.g. a second learning rate). */
  dashed?: boolean;
}

export interface ChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  series: readonly ChartSeries[];
  width?: number;
  height?: number;
  /** Logarithmic y axis (values <= 0 are dropped). */
  logY?: boolean;
  /** Vertical marker lines, e.g. the best evaluation step. */
  markersX?: readonly { x: number; label: string; color: string }[];
  maxPoints?: number;
}

/** Escape text for HTML/SVG content and attribute values. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** "Nice" tick values covering [lo, hi] (1, 2, 5 x 10^k steps). */
export function niceTicks(lo: number, hi: number, target = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / target;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step)
    out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  return out;
}

/** Compact number label: 12k, 0.0001 -> 1e-4, 3.25; `scale` (the axis' largest |value|) keeps one unit per axis. */
export function formatTick(v: number, scale = Math.abs(v)): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (scale >= 1e6) return `${+(v / 1e6).toPrecision(3)}M`;
  if (scale >= 1e4) return `${+(v / 1e3).toPrecision(3)}k`;
  if (a < 1e-3) return v.toExponential(0);
  return String(+v.toPrecision(3));
}

function decimate(points: readonly (readonly [number, number])[], maxPoints: number): (readonly [number, number])[] {
  if (points.length <= maxPoints * 2) return [...points];
  const bucket = Math.ceil(points.length / maxPoints);
  const out: (readonly [number, number])[] = [];
  for (let s = 0; s < points.length; s += bucket) {
    let lo: readonly [number, number] | null = null,
      hi: readonly [number, number] | null = null;
    for (let i = s; i < Math.min(points.length, s + bucket); i++) {
      const p = points[i]!;
      if (!Number.isFinite(p[1])) continue;
      if (!lo || p[1] < lo[1]) lo = p;
      if (!hi || p[1] > hi[1]) hi = p;
    }
    if (lo && hi) out.push(...(lo[0] <= hi[0] ? [lo, hi] : [hi, lo]));
  }
  return out;
}

/** Render a line chart as an inline <svg> element string. */
export function lineChartSvg(o: ChartOptions): string {
  const W = o.width ?? 560,
    H = o.height ?? 260;
  const m = { l: 58, r: 16, t: 30, b: 42 };
  const pw = W - m.l - m.r,
    ph = H - m.t - m.b;
  const ty = (y: number) => (o.logY ? Math.log10(y) : y);
  const series = o.series.map((s) => ({
    ...s,
    points: decimate(
      s.points.filter((p) => Number.isFinite(p[0]) && (!o.logY || p[1] > 0)),
      o.maxPoints ?? 1000,
    ),
  }));
  const xs = series.flatMap((s) => s.points.map((p) => p[0])).concat((o.markersX ?? []).map((mk) => mk.x));
  const ys = series.flatMap((s) =>
    s.points
      .map((p) => p[1])
      .filter(Number.isFinite)
      .map(ty),
  );
  const head =
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${escapeHtml(o.title)}" class="chart">` +
    `<text x="${m.l}" y="18" class="chart-title">${escapeHtml(o.title)}</text>`;
  if (xs.length === 0 || ys.length === 0) {
    return (
      `${head}<rect x="${m.l}" y="${m.t}" width="${pw}" height="${ph}" class="plot"/>` +
      `<text x="${m.l + pw / 2}" y="${m.t + ph / 2}" text-anchor="middle" class="empty">no data yet</text></svg>`
    );
  }
  let x0 = Math.min(...xs),
    x1 = Math.max(...xs);
  let y0 = Math.min(...ys),
    y1 = Math.max(...ys);
  if (x1 === x0) {
    x0 -= 1;
    x1 += 1;
  }
  if (y1 === y0) {
    const d = Math.abs(y0) * 0.1 || 1;
    y0 -= d;
    y1 += d;
  }
  const pad = (y1 - y0) * 0.06;
  y0 -= pad;
  y1 += pad;
  const sx = (x: number) => m.l + ((x - x0) / (x1 - x0)) * pw;
  const sy = (y: number) => m.t + ph - ((ty(y) - y0) / (y1 - y0)) * ph;
  const parts: string[] = [head, `<rect x="${m.l}" y="${m.t}" width="${pw}" height="${ph}" class="plot"/>`];
  const yTicks = o.logY
    ? niceTicks(Math.floor(y0), Math.ceil(y1), 4).filter((v) => Number.isInteger(v) && v >= y0 && v <= y1)
    : niceTicks(y0, y1, 5);
  for (const t of yTicks) {
    const yy = m.t + ph - ((t - y0) / (y1 - y0)) * ph;
    parts.push(
      `<line x1="${m.l}" x2="${m.l + pw}" y1="${yy.toFixed(1)}" y2="${yy.toFixed(1)}" class="grid"/>`,
      `<text x="${m.l - 6}" y="${(yy + 4).toFixed(1)}" text-anchor="end" class="tick">${formatTick(o.logY ? 10 ** t : t)}</text>`,
    );
  }
  const xTicks = niceTicks(x0, x1, 6);
  const xScale = Math.max(...xTicks.map(Math.abs));
  for (const t of xTicks) {
    const xx = sx(t);
    parts.push(
      `<line x1="${xx.toFixed(1)}" x2="${xx.toFixed(1)}" y1="${m.t + ph}" y2="${m.t + ph + 4}" class="axis"/>`,
      `<text x="${xx.toFixed(1)}" y="${m.t + ph + 16}" text-anchor="middle" class="tick">${formatTick(t, xScale)}</text>`,
    );
  }
  parts.push(
    `<text x="${m.l + pw / 2}" y="${H - 6}" text-anchor="middle" class="label">${escapeHtml(o.xLabel)}</text>`,
    `<text transform="translate(14 ${m.t + ph / 2}) rotate(-90)" text-anchor="middle" class="label">${escapeHtml(o.yLabel)}</text>`,
  );
  for (const mk of o.markersX ?? []) {
    const xx = sx(mk.x).toFixed(1);
    parts.push(
      `<line x1="${xx}" x2="${xx}" y1="${m.t}" y2="${m.t + ph}" stroke="${mk.color}" stroke-dasharray="4 3" stroke-width="1.5"/>`,
      `<text x="${xx}" y="${m.t + 12}" dx="4" fill="${mk.color}" class="tick">${escapeHtml(mk.label)}</text>`,
    );
  }
  for (const s of series) {
    let d = '';
    let pen = false;
    for (const [x, y] of s.points) {
      if (!Number.isFinite(y)) {
        pen = false;
        continue;
      }
      d += `${pen ? 'L' : 'M'}${sx(x).toFixed(1)} ${sy(y).toFixed(1)}`;
      pen = true;
    }
    parts.push(
      `<path d="${d}" fill="none" stroke="${s.color}" stroke-width="1.8"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`,
    );
    if (s.markers) {
      for (const [x, y] of s.points)
        if (Number.isFinite(y))
          parts.push(
            `<circle cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="3.2" fill="${s.color}">` +
              `<title>${escapeHtml(`${s.name} at step ${x}: ${y}`)}</title></circle>`,
          );
    }
  }
  if (series.length > 1) {
    // Legend in the title row, right-aligned, so it never covers the data.
    let lx = W - m.r - series.reduce((w, s) => w + 30 + s.name.length * 6, 0);
    for (const s of series) {
      parts.push(
        `<line x1="${lx}" x2="${lx + 16}" y1="14" y2="14" stroke="${s.color}" stroke-width="2.5"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`,
        `<text x="${lx + 20}" y="18" class="legend">${escapeHtml(s.name)}</text>`,
      );
      lx += 30 + s.name.length * 6;
    }
  }
  parts.push('</svg>');
  return parts.join('');
}
