/**
 * The bench's chart: checkpoint sync-phase time by number of dirty relations R,
 * md vs volume vs the floor (raw extent), log-scale y axis, one panel per P. Hand-written SVG,
 * 960x540 (16:9, for slides), no fonts or scripts beyond a generic sans-serif.
 *
 * Invariants:
 *  G1 Every panel shares one y scale (whole decades covering every median, min and max shown),
 *     so bar heights compare across panels.
 *  G2 Bars are medians; the thin whisker on each bar spans min..max of the rounds.
 *  G3 All text is XML-escaped (CPU model names carry "(R)" and sometimes "&").
 */
import type { BenchResult } from './run.js';
import type { CellResult, RowKind } from './matrix.js';

const W = 960;
const H = 540;
const SERIES: { kind: RowKind; label: string; color: string }[] = [
  { kind: 'md', label: 'md: one fsync per segment file', color: '#d95f02' },
  { kind: 'volume', label: 'volume: <= 2 fdatasync per checkpoint', color: '#1b9e77' },
  { kind: 'rawExtent', label: 'floor: same bytes, one file, one fdatasync', color: '#7570b3' },
];
/** Shown when the run has the postgres row. */
const POSTGRES_SERIES = { kind: 'postgres' as const, label: 'postgres: CHECKPOINT, its own log line', color: '#e7298a' };

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function fmtMs(v: number): string {
  if (v >= 1000) return `${(v / 1000).toFixed(v >= 10_000 ? 0 : 1)} s`;
  if (v >= 100) return `${v.toFixed(0)} ms`;
  if (v >= 10) return `${v.toFixed(0)} ms`;
  if (v >= 1) return `${v.toFixed(1)} ms`;
  return `${v.toFixed(2)} ms`;
}

function tickLabel(decade: number): string {
  const v = 10 ** decade;
  if (v >= 1000) return `${v / 1000} s`;
  if (v >= 1) return `${v} ms`;
  return `${Number(v.toPrecision(1))} ms`;
}

export function renderSvg(result: BenchResult): string {
  const pagesList = [...new Set(result.cells.map((c) => c.pages))];
  const relationsList = [...new Set(result.cells.map((c) => c.relations))];
  const cellOf = (R: number, P: number): CellResult | undefined => result.cells.find((c) => c.relations === R && c.pages === P);
  const series = result.cells.some((c) => c.rows.postgres) ? [...SERIES, POSTGRES_SERIES] : SERIES;
  const rowOf = (c: CellResult, kind: RowKind) => (c.rows as Partial<Record<RowKind, CellResult['rows']['md']>>)[kind];

  // G1: one decade range for all panels.
  const values: number[] = [];
  for (const c of result.cells) for (const s of series) values.push(rowOf(c, s.kind)?.syncMs.min ?? NaN, rowOf(c, s.kind)?.syncMs.max ?? NaN);
  const positive = values.filter((v) => Number.isFinite(v) && v > 0);
  const lo = Math.floor(Math.log10(Math.min(...positive, 1)));
  const hi = Math.max(lo + 1, Math.ceil(Math.log10(Math.max(...positive, 1))));

  // Four series take two legend rows.
  const legendRows = series.length > 3 ? 2 : 1;
  const top = legendRows === 2 ? 128 : 112;
  const bottom = H - 70;
  const left = 84;
  const right = W - 24;
  const gap = 28;
  const panelW = (right - left - gap * (pagesList.length - 1)) / Math.max(1, pagesList.length);
  const y = (v: number) => bottom - ((Math.log10(Math.max(v, 10 ** lo)) - lo) / (hi - lo)) * (bottom - top);

  const m = result.machine;
  const date = result.startedAt.slice(0, 10);
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif">`);
  out.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`);
  out.push(`<text x="${W / 2}" y="30" text-anchor="middle" font-size="20" font-weight="bold" fill="#222">${esc('Checkpoint sync phase: md segment files vs one volume file')}</text>`);
  out.push(
    `<text x="${W / 2}" y="52" text-anchor="middle" font-size="13" fill="#555">${esc(`${m.cpus} x ${m.cpuModel} · ${m.fsType} · Node ${m.node} · fdatasync 8 KiB ${fmtMs(m.fdatasync8KiBMs.median)} · ${date} · median of ${result.options.rounds} rounds, whiskers min-max`)}</text>`,
  );
  // Legend: one row, or two of two.
  let lx = left;
  series.forEach((s, i) => {
    const ly = legendRows === 2 && i >= 2 ? 90 : 70;
    if (legendRows === 2 && i === 2) lx = left;
    out.push(`<rect x="${lx}" y="${ly}" width="14" height="14" fill="${s.color}"/>`);
    out.push(`<text x="${lx + 20}" y="${ly + 12}" font-size="13" fill="#222">${esc(s.label)}</text>`);
    lx += 20 + s.label.length * 6.6 + 28;
  });

  // Y axis: decade grid lines (all panels), labels on the left.
  for (let d = lo; d <= hi; d++) {
    const yy = y(10 ** d);
    out.push(`<line x1="${left}" x2="${right}" y1="${yy.toFixed(1)}" y2="${yy.toFixed(1)}" stroke="#e2e2e2"/>`);
    out.push(`<text x="${left - 8}" y="${(yy + 4).toFixed(1)}" text-anchor="end" font-size="12" fill="#444">${tickLabel(d)}</text>`);
  }
  out.push(
    `<text transform="translate(22 ${((top + bottom) / 2).toFixed(0)}) rotate(-90)" text-anchor="middle" font-size="13" fill="#222">sync phase per checkpoint (log scale)</text>`,
  );

  pagesList.forEach((P, pi) => {
    const px = left + pi * (panelW + gap);
    out.push(`<line x1="${px}" x2="${px + panelW}" y1="${bottom}" y2="${bottom}" stroke="#444"/>`);
    out.push(`<line x1="${px}" x2="${px}" y1="${top}" y2="${bottom}" stroke="#444"/>`);
    out.push(`<text x="${(px + panelW / 2).toFixed(1)}" y="${top - 8}" text-anchor="middle" font-size="14" font-weight="bold" fill="#222">P = ${P} dirty page${P === 1 ? '' : 's'} per relation</text>`);
    const groupW = panelW / relationsList.length;
    const barW = Math.min(44, (groupW * 0.75) / series.length);
    relationsList.forEach((R, ri) => {
      const gx = px + ri * groupW + (groupW - barW * series.length) / 2;
      const c = cellOf(R, P);
      out.push(`<text x="${(px + ri * groupW + groupW / 2).toFixed(1)}" y="${bottom + 20}" text-anchor="middle" font-size="13" fill="#222">${R}</text>`);
      if (!c) return;
      series.forEach((s, si) => {
        const r = rowOf(c, s.kind);
        if (!r) return;
        const row = r.syncMs;
        const bx = gx + si * barW;
        const by = y(row.median);
        out.push(`<rect x="${bx.toFixed(1)}" y="${by.toFixed(1)}" width="${(barW - 3).toFixed(1)}" height="${(bottom - by).toFixed(1)}" fill="${s.color}"/>`);
        const cx = bx + (barW - 3) / 2;
        out.push(`<line x1="${cx.toFixed(1)}" x2="${cx.toFixed(1)}" y1="${y(row.max).toFixed(1)}" y2="${y(row.min).toFixed(1)}" stroke="#222" stroke-width="1"/>`);
        // Labels must not run into the neighbour's: shrink the font to the bar's width.
        const label = fmtMs(row.median);
        const fontSize = Math.min(10, (barW - 1) / (label.length * 0.58));
        out.push(`<text x="${cx.toFixed(1)}" y="${(Math.min(by, y(row.max)) - 5).toFixed(1)}" text-anchor="middle" font-size="${fontSize.toFixed(1)}" fill="#333">${esc(label)}</text>`);
      });
    });
  });
  out.push(`<text x="${((left + right) / 2).toFixed(0)}" y="${bottom + 46}" text-anchor="middle" font-size="13" fill="#222">dirty relations R (each with P dirty ${result.options.blockSize / 1024} KiB pages)</text>`);
  out.push('</svg>');
  return out.join('\n') + '\n';
}
