// Small SVG charts drawn here: stacked bars over time buckets. Colours come
// with a legend and every bar has a <title>, and each chart carries a text
// summary for screen readers.

const NS = 'http' + '://www.w3.org/2000/svg';

function s(tag, attrs, ...kids) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const k of kids) el.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return el;
}

export const PALETTE = {
  completed: '#1e8e3e', failed: '#d93025', timed_out: '#e37400', killed: '#5f6368',
  limit_exceeded: '#a142f4', blocked: '#6d4c41', running: '#1a73e8', violations: '#c5221f',
};

/**
 * buckets: [{label, values: {series: n}}]; series: names in stacking order.
 * Returns a <figure> with the chart, its legend and a text summary.
 */
export function stackedBars({ title, buckets, series, colors = PALETTE }) {
  const W = 480, H = 200, left = 34, bottom = 24, top = 8;
  const max = Math.max(1, ...buckets.map((b) => series.reduce((n, k) => n + (b.values[k] || 0), 0)));
  const bw = (W - left - 4) / Math.max(1, buckets.length);
  const y = (v) => top + (H - top - bottom) * (1 - v / max);
  const svg = s('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': title });
  svg.append(s('title', {}, title));
  for (const t of [0, max / 2, max]) {
    svg.append(s('line', { x1: left, x2: W, y1: y(t), y2: y(t), stroke: '#d0d7de', 'stroke-width': 1 }));
    svg.append(s('text', { x: left - 4, y: y(t) + 4, 'text-anchor': 'end', 'font-size': 10, fill: '#4d5761' }, Math.round(t)));
  }
  buckets.forEach((b, i) => {
    let acc = 0;
    for (const k of series) {
      const v = b.values[k] || 0;
      if (!v) continue;
      const rect = s('rect', {
        x: left + i * bw + 1, width: Math.max(1, bw - 2), y: y(acc + v), height: y(acc) - y(acc + v), fill: colors[k] || '#1a73e8',
      });
      rect.append(s('title', {}, `${b.label}: ${v} ${k}`));
      svg.append(rect);
      acc += v;
    }
    if (i % Math.ceil(buckets.length / 6) === 0) {
      svg.append(s('text', { x: left + i * bw + bw / 2, y: H - 6, 'text-anchor': 'middle', 'font-size': 10, fill: '#4d5761' }, b.label));
    }
  });
  const totals = series.map((k) => [k, buckets.reduce((n, b) => n + (b.values[k] || 0), 0)]);
  const fig = document.createElement('figure');
  fig.className = 'panel';
  const cap = document.createElement('figcaption');
  cap.textContent = title;
  const legend = document.createElement('ul');
  legend.className = 'legend';
  for (const [k, n] of totals) {
    const li = document.createElement('li');
    const swatch = s('svg', { width: 10, height: 10, 'aria-hidden': 'true' }, s('rect', { width: 10, height: 10, fill: colors[k] || '#1a73e8' }));
    li.append(swatch, ` ${k}: ${n}`);
    legend.append(li);
  }
  fig.append(cap, svg, legend);
  return fig;
}
