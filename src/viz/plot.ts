// Loss curves as PNG: an SVG line chart rendered by sharp (fonts from fontconfig; without fonts the
// labels are simply missing, the curves are still drawn).
import sharp from 'sharp';

export interface Series {
  name: string;
  points: [number, number][];
  colour: string;
}

const esc = (s: string) => s.replace(/[<>&]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;' })[c]!);
const FONT = 'font-family="DejaVu Sans, sans-serif"';

export async function plotLines(file: string, series: Series[], opts: { title: string; xLabel: string; yLabel: string; width?: number; height?: number }): Promise<void> {
  const W = opts.width ?? 900, H = opts.height ?? 500, L = 70, R = 20, T = 40, B = 50;
  const all = series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  if (all.length === 0) throw new Error('plotLines: nothing to plot');
  const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(0, ...ys), y1 = Math.max(...ys);
  const sx = (x: number) => L + ((x - x0) / Math.max(x1 - x0, 1e-9)) * (W - L - R);
  const sy = (y: number) => H - B - ((y - y0) / Math.max(y1 - y0, 1e-9)) * (H - T - B);
  const ticks = (a: number, b: number, n: number) => Array.from({ length: n + 1 }, (_, i) => a + ((b - a) * i) / n);
  const grid = ticks(y0, y1, 5).map((y) => `<line x1="${L}" x2="${W - R}" y1="${sy(y)}" y2="${sy(y)}" stroke="#ddd"/><text x="${L - 6}" y="${sy(y) + 4}" font-size="12" text-anchor="end" ${FONT}>${y.toFixed(2)}</text>`).join('') +
    ticks(x0, x1, 6).map((x) => `<text x="${sx(x)}" y="${H - B + 18}" font-size="12" text-anchor="middle" ${FONT}>${Math.round(x)}</text>`).join('');
  const lines = series.map((s, i) => {
    const pts = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)).map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' ');
    return `<polyline fill="none" stroke="${s.colour}" stroke-width="1.5" points="${pts}"/><text x="${W - R - 200}" y="${T + 16 * i}" font-size="13" fill="${s.colour}" ${FONT}>${esc(s.name)}</text>`;
  }).join('');
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}"><rect width="${W}" height="${H}" fill="white"/>${grid}` +
    `<line x1="${L}" x2="${L}" y1="${T}" y2="${H - B}" stroke="#000"/><line x1="${L}" x2="${W - R}" y1="${H - B}" y2="${H - B}" stroke="#000"/>${lines}` +
    `<text x="${W / 2}" y="22" font-size="15" text-anchor="middle" ${FONT}>${esc(opts.title)}</text>` +
    `<text x="${W / 2}" y="${H - 10}" font-size="13" text-anchor="middle" ${FONT}>${esc(opts.xLabel)}</text>` +
    `<text x="16" y="${H / 2}" font-size="13" text-anchor="middle" transform="rotate(-90 16 ${H / 2})" ${FONT}>${esc(opts.yLabel)}</text></svg>`;
  await sharp(Buffer.from(svg)).png().toFile(file);
}

/**
 * The loss curve of a metrics.jsonl (train records: loss, ce, kl against the global step). False, and no file, when no
 * record holds a finite value (every step skipped as non-finite).
 */
export async function plotMetrics(metricsFile: string, pngFile: string, title: string): Promise<boolean> {
  const fs = await import('fs');
  const recs = fs.readFileSync(metricsFile, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, number | string>).filter((r) => r.type === 'train');
  // a non-finite loss is written as null (JSON has no NaN): no point, not a point at 0
  const pick = (k: string): [number, number][] => recs.map((r) => [Number(r.globalStep), typeof r[k] === 'number' ? r[k] : NaN]);
  const series = [
    { name: 'loss', points: pick('loss'), colour: '#1f77b4' },
    { name: 'CE (text)', points: pick('ce'), colour: '#2ca02c' },
    { name: 'KL (visual words)', points: pick('kl'), colour: '#d62728' },
  ];
  if (!series.some((s) => s.points.some(([x, y]) => Number.isFinite(x) && Number.isFinite(y)))) return false;
  await plotLines(pngFile, series, { title, xLabel: 'optimizer step', yLabel: 'loss' });
  return true;
}
