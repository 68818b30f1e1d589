// Hand-written SVG charts for docs/evaluation.md (no plotting dependency). Pure: returns SVG text.

const PALETTE = ['#d62728', '#ff7f0e', '#bcbd22', '#2ca02c', '#17becf', '#9467bd', '#1f77b4', '#8c564b'];

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

export interface Series {
  readonly name: string;
  readonly values: readonly number[];
}

interface Frame {
  readonly width: number;
  readonly height: number;
  readonly left: number;
  readonly right: number;
  readonly top: number;
  readonly bottom: number;
}

function legend(series: readonly Series[], x: number, y: number): string {
  return series
    .map(
      (s, i) =>
        `<rect x="${x}" y="${y + i * 16}" width="10" height="10" fill="${PALETTE[i % PALETTE.length]}"/>` +
        `<text x="${x + 14}" y="${y + i * 16 + 9}" font-size="11">${esc(s.name)}</text>`,
    )
    .join('');
}

/** The opening of every chart: the svg element, a white background, the title. */
function chartHead(f: Frame, title: string): string[] {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${f.width}" height="${f.height}" font-family="sans-serif">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${f.left}" y="22" font-size="15" font-weight="bold">${esc(title)}</text>`,
  ];
}

/** A grouped chart's category name, centred under group `ci`. */
function categoryLabel(f: Frame, ci: number, groupW: number, base: number, name: string): string {
  return `<text x="${f.left + ci * groupW + groupW / 2}" y="${base + 16}" font-size="11" text-anchor="middle">${esc(name)}</text>`;
}

/** The end of a grouped chart: the baseline, the legend, the closing tag. */
function groupedChartFoot(f: Frame, base: number, series: readonly Series[]): string[] {
  return [
    `<line x1="${f.left}" x2="${f.width - f.right}" y1="${base}" y2="${base}" stroke="#333"/>`,
    legend(series, f.width - f.right + 12, f.top),
    '</svg>',
  ];
}

/** The power of ten a log axis must reach to show every value of every series (at least 10^0). */
function topExponent(series: readonly Series[]): number {
  return Math.ceil(Math.log10(Math.max(1, ...series.flatMap((s) => s.values))));
}

/** Log10 axis from 10^0 to 10^maxExp; 0 maps to the bottom. */
function logY(v: number, maxExp: number, f: Frame): number {
  const h = f.height - f.top - f.bottom;
  const e = v <= 1 ? 0 : Math.log10(v);
  return f.top + h - (e / maxExp) * h;
}

function logAxis(maxExp: number, f: Frame, label: string): string {
  const out: string[] = [];
  for (let e = 0; e <= maxExp; e++) {
    const y = logY(10 ** e, maxExp, f);
    out.push(
      `<line x1="${f.left}" x2="${f.width - f.right}" y1="${y}" y2="${y}" stroke="#ddd"/>`,
      `<text x="${f.left - 6}" y="${y + 4}" font-size="11" text-anchor="end">${e === 0 ? '≤1' : `10${sup(e)}`}</text>`,
    );
  }
  const mid = (f.top + f.height - f.bottom) / 2;
  out.push(
    `<text x="14" y="${mid}" font-size="12" text-anchor="middle" transform="rotate(-90 14 ${mid})">${esc(label)}</text>`,
  );
  return out.join('');
}

function sup(e: number): string {
  const d = '⁰¹²³⁴⁵⁶⁷⁸⁹';
  return String(e)
    .split('')
    .map((c) => d[Number(c)])
    .join('');
}

/**
 * Grouped bar chart on a log scale: one group per category, one bar per series. Zero values are drawn as a
 * small marker on the axis so "none broken" is visible.
 */
export function groupedLogBars(opts: {
  title: string;
  categories: readonly string[];
  series: readonly Series[];
  yLabel: string;
}): string {
  const f: Frame = { width: 980, height: 440, left: 60, right: 250, top: 40, bottom: 70 };
  const maxExp = topExponent(opts.series);
  const plotW = f.width - f.left - f.right;
  const groupW = plotW / opts.categories.length;
  const barW = (groupW * 0.8) / opts.series.length;
  const parts: string[] = [...chartHead(f, opts.title), logAxis(maxExp, f, opts.yLabel)];
  const base = f.height - f.bottom;
  opts.categories.forEach((c, ci) => {
    const gx = f.left + ci * groupW + groupW * 0.1;
    opts.series.forEach((s, si) => {
      const v = s.values[ci];
      const x = gx + si * barW;
      const color = PALETTE[si % PALETTE.length];
      if (v <= 0) {
        parts.push(`<rect x="${x}" y="${base - 2}" width="${barW - 1}" height="2" fill="${color}"/>`);
      } else {
        const y = logY(Math.max(v, 1.5), maxExp, f);
        parts.push(
          `<rect x="${x}" y="${y}" width="${barW - 1}" height="${base - y}" fill="${color}"><title>${esc(
            `${s.name}: ${v}`,
          )}</title></rect>`,
        );
      }
    });
    parts.push(categoryLabel(f, ci, groupW, base, c));
  });
  parts.push(...groupedChartFoot(f, base, opts.series));
  return parts.join('\n');
}

/** Log-log line chart: x values shared by every series. Zero y values are drawn on the axis. */
export function logLogLines(opts: {
  title: string;
  x: readonly number[];
  xLabel: string;
  series: readonly Series[];
  yLabel: string;
}): string {
  const f: Frame = { width: 760, height: 420, left: 60, right: 250, top: 40, bottom: 60 };
  const maxExp = topExponent(opts.series);
  const lx0 = Math.log10(opts.x[0]);
  const lx1 = Math.log10(opts.x[opts.x.length - 1]);
  const px = (x: number) =>
    f.left + ((Math.log10(x) - lx0) / (lx1 - lx0 || 1)) * (f.width - f.left - f.right);
  const base = f.height - f.bottom;
  const parts: string[] = [
    ...chartHead(f, opts.title),
    logAxis(maxExp, f, opts.yLabel),
    `<line x1="${f.left}" x2="${f.width - f.right}" y1="${base}" y2="${base}" stroke="#333"/>`,
  ];
  for (const x of opts.x) {
    parts.push(
      `<text x="${px(x)}" y="${base + 16}" font-size="11" text-anchor="middle">${x.toLocaleString('en-US')}</text>`,
    );
  }
  parts.push(
    `<text x="${(f.left + f.width - f.right) / 2}" y="${base + 36}" font-size="12" text-anchor="middle">${esc(opts.xLabel)}</text>`,
  );
  opts.series.forEach((s, si) => {
    const color = PALETTE[si % PALETTE.length];
    const pts = s.values.map((v, i) => `${px(opts.x[i]).toFixed(1)},${logY(v, maxExp, f).toFixed(1)}`);
    parts.push(`<polyline points="${pts.join(' ')}" fill="none" stroke="${color}" stroke-width="2"/>`);
    s.values.forEach((v, i) => {
      parts.push(
        `<circle cx="${px(opts.x[i]).toFixed(1)}" cy="${logY(v, maxExp, f).toFixed(1)}" r="3" fill="${color}"><title>${esc(`${s.name}: ${v}`)}</title></circle>`,
      );
    });
  });
  parts.push(legend(opts.series, f.width - f.right + 12, f.top), '</svg>');
  return parts.join('\n');
}

/** Plain bar chart of shares (0..1) per category, one bar per series, linear scale in percent. */
export function groupedShareBars(opts: {
  title: string;
  categories: readonly string[];
  series: readonly Series[];
  yLabel: string;
}): string {
  const f: Frame = { width: 760, height: 380, left: 60, right: 200, top: 40, bottom: 60 };
  const plotH = f.height - f.top - f.bottom;
  const plotW = f.width - f.left - f.right;
  const groupW = plotW / opts.categories.length;
  const barW = (groupW * 0.7) / opts.series.length;
  const base = f.height - f.bottom;
  const parts: string[] = [...chartHead(f, opts.title)];
  for (let p = 0; p <= 100; p += 25) {
    const y = base - (p / 100) * plotH;
    parts.push(
      `<line x1="${f.left}" x2="${f.width - f.right}" y1="${y}" y2="${y}" stroke="#ddd"/>`,
      `<text x="${f.left - 6}" y="${y + 4}" font-size="11" text-anchor="end">${p}%</text>`,
    );
  }
  const mid = (f.top + base) / 2;
  parts.push(
    `<text x="14" y="${mid}" font-size="12" text-anchor="middle" transform="rotate(-90 14 ${mid})">${esc(opts.yLabel)}</text>`,
  );
  opts.categories.forEach((c, ci) => {
    const gx = f.left + ci * groupW + groupW * 0.15;
    opts.series.forEach((s, si) => {
      const v = s.values[ci];
      const h = v * plotH;
      parts.push(
        `<rect x="${gx + si * barW}" y="${base - h}" width="${barW - 2}" height="${h}" fill="${PALETTE[si % PALETTE.length]}"><title>${esc(`${s.name}: ${(100 * v).toFixed(2)}%`)}</title></rect>`,
        `<text x="${gx + si * barW + barW / 2}" y="${base - h - 3}" font-size="10" text-anchor="middle">${(100 * v).toFixed(1)}</text>`,
      );
    });
    parts.push(categoryLabel(f, ci, groupW, base, c));
  });
  parts.push(...groupedChartFoot(f, base, opts.series));
  return parts.join('\n');
}
