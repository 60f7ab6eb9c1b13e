// Plain SVG charts: bars, lines and step functions, plus a canvas heatmap.
// Each chart is a draw(width) function; mount() redraws it when its box changes width.

import { h, s, num } from "./dom.js";

export const COLORS = ["#3b6fd8", "#e0823a", "#2e9d68", "#b14fc5", "#d9485f", "#6b7280",
  "#0f9fb3", "#a3782b", "#7da832", "#e377c2"];
let clipCount = 0;
const PAD = { left: 56, right: 14, top: 14, bottom: 44 };
let measurer = null;

// Width in pixels of `text` in the page's font: labels are placed so that none overlap.
export function textWidth(text, size = 11) {
  measurer = measurer || document.createElement("canvas").getContext("2d");
  measurer.font = `${size}px ${getComputedStyle(document.body).fontFamily}`;
  return measurer.measureText(String(text)).width;
}

// `text` broken into lines of at most `width` pixels, at spaces.
function wrap(text, width, size = 12) {
  const lines = [];
  for (const word of String(text).split(" ")) {
    const line = lines.length ? `${lines.at(-1)} ${word}` : word;
    if (lines.length && textWidth(line, size) <= width) lines[lines.length - 1] = line;
    else lines.push(word);
  }
  return lines;
}

// `text` cut to at most `width` pixels, with an ellipsis.
function fit(text, width, size = 11) {
  if (textWidth(text, size) <= width) return text;
  let n = text.length;
  while (n > 1 && textWidth(`${text.slice(0, n)}…`, size) > width) n--;
  return `${text.slice(0, n)}…`;
}

export function mount(container, draw) {
  const box = h("div", { class: "chart" });
  container.append(box);
  let last = 0;
  const render = () => {
    const w = Math.max(260, Math.floor(box.clientWidth || container.clientWidth || 600));
    if (w === last) return;
    last = w;
    box.replaceChildren(draw(w));
  };
  render();
  if (window.ResizeObserver) new ResizeObserver(render).observe(box);
  return box;
}

export function niceTicks(lo, hi, n = 5) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((st) => st >= raw);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

function linear(d0, d1, r0, r1) {
  const k = d1 === d0 ? 0 : (r1 - r0) / (d1 - d0);
  return (v) => r0 + (v - d0) * k;
}

function tickLabel(v) {
  const a = Math.abs(v);
  if (a >= 1e6) return `${num(v / 1e6, 3)}M`;
  if (a >= 1e4) return `${num(v / 1e3, 3)}k`;
  return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(4)));
}

function axes(g, x, y, xt, yt, width, height, { xLabel, yLabel, xFormat = tickLabel, yFormat = tickLabel } = {}) {
  const bottom = height - PAD.bottom;
  for (const v of yt) {
    g.append(s("line", { x1: PAD.left, x2: width - PAD.right, y1: y(v), y2: y(v), class: "grid" }));
    g.append(s("text", { x: PAD.left - 6, y: y(v) + 4, class: "tick", "text-anchor": "end" }, yFormat(v)));
  }
  for (const v of xt) {
    g.append(s("text", { x: x(v), y: bottom + 16, class: "tick", "text-anchor": "middle" }, xFormat(v)));
  }
  g.append(s("line", { x1: PAD.left, x2: width - PAD.right, y1: bottom, y2: bottom, class: "axis" }));
  if (xLabel) g.append(s("text", { x: (PAD.left + width - PAD.right) / 2, y: height - 6, class: "label", "text-anchor": "middle" }, xLabel));
  if (yLabel) g.append(s("text", { x: 12, y: (PAD.top + bottom) / 2, class: "label", "text-anchor": "middle", transform: `rotate(-90 12 ${(PAD.top + bottom) / 2})` }, yLabel));
}

// Grouped bars. series: [{name, values, color}], labels: one per group.
export function bars({ labels, series, height = 260, xLabel, yLabel, format = num, highlight = [], refLine, yMax, yMin = 0, valueLabels }) {
  return (width) => {
    const svg = s("svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "plot", role: "img" });
    const top = Math.max(yMax ?? 0, refLine ? refLine.value * 1.08 : 0, ...series.flatMap((se) => se.values.map((v) => v ?? 0)));
    const y = linear(yMin, top || 1, height - PAD.bottom, PAD.top);
    const inner = width - PAD.left - PAD.right;
    const group = inner / labels.length;
    const bw = Math.max(1, (group * 0.8) / series.length);
    const x = (i) => PAD.left + group * (i + 0.5);
    const widest = Math.max(0, ...labels.map((l) => textWidth(l)));
    const every = Math.max(1, Math.ceil((widest + 8) / group));  // every k-th label: no two overlap
    axes(svg, x, y, [], niceTicks(yMin, top || 1, 4), width, height, { xLabel, yLabel });
    labels.forEach((lab, i) => {
      if (i % every === 0) svg.append(s("text", { x: x(i), y: height - PAD.bottom + 16, class: "tick", "text-anchor": "middle" }, lab));
      series.forEach((se, k) => {
        const v = se.values[i] ?? 0;
        const bx = PAD.left + group * i + group * 0.1 + k * bw;
        const rect = s("rect", {
          x: bx, y: y(Math.max(v, yMin)), width: Math.max(1, bw - 1), height: Math.abs(y(yMin) - y(Math.max(v, yMin))),
          fill: se.color || COLORS[k % COLORS.length], class: highlight.includes(i) ? "bar hl" : "bar",
        }, s("title", {}, `${lab}${se.name ? ` · ${se.name}` : ""}: ${format(v)}`));
        svg.append(rect);
        const show = (valueLabels ?? labels.length * series.length <= 16) && textWidth(format(v)) + 4 <= bw;
        if (show) svg.append(s("text", { x: bx + bw / 2, y: y(Math.max(v, yMin)) - 4, class: "tick", "text-anchor": "middle" }, format(v)));
      });
    });
    if (refLine) {
      svg.append(s("line", { x1: PAD.left, x2: width - PAD.right, y1: y(refLine.value), y2: y(refLine.value), class: "ref" }));
      svg.append(s("text", { x: PAD.left + 4, y: y(refLine.value) - 5, class: "ref-label" }, refLine.label));
    }
    return svg;
  };
}

// Horizontal grouped bars: each group's label on a line of its own above its bars, so that no two
// labels meet at any width; values at the bar ends; marks (bounds, targets) as short dashed lines.
// groups: [{ label, bars: [{ key, value, title }], marks: [{ key, value, title }] }], colors: key -> colour.
export function hbars({ groups, colors, format = num, axisLabel, refLines = [] }) {
  const BAR = 13, STEP = 16, HEAD = 17, SEP = 8;
  const labelOf = (b) => `${format(b.value)}${b.best ? " · best" : ""}`;
  return (width) => {
    const left = 8, top = refLines.length ? 18 : 4;
    const values = groups.flatMap((g) => [...g.bars, ...g.marks].map((b) => b.value)).concat(refLines.map((r) => r.value)).filter(Number.isFinite);
    const room = Math.min(width * 0.3, 8 + Math.max(0, ...groups.flatMap((g) => g.bars.map((b) => textWidth(labelOf(b), 10)))));
    const right = width - room;
    const { x, ticks, log } = valueAxis(values, left, right);
    const rows = [];
    let y = top;
    for (const g of groups) {
      rows.push({ g, y });
      y += HEAD + Math.max(1, g.bars.length) * STEP + SEP;
    }
    const said = axisLabel ? wrap(log ? `${axisLabel} (log scale)` : axisLabel, width - 8) : [];
    const bottom = y - SEP + 4, height = bottom + 18 + 16 * said.length + (said.length ? 2 : 0);
    const svg = s("svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "plot hbars", role: "img" });
    for (const v of ticks) {
      svg.append(s("line", { x1: x(v), x2: x(v), y1: top, y2: bottom, class: "grid" }));
      const w = textWidth(tickLabel(v)), anchor = x(v) - w / 2 < 0 ? "start" : x(v) + w / 2 > width ? "end" : "middle";
      svg.append(s("text", { x: x(v), y: bottom + 14, class: "tick", "text-anchor": anchor }, tickLabel(v)));
    }
    svg.append(s("line", { x1: left, x2: left, y1: top, y2: bottom, class: "axis" }));
    for (const { g, y: y0 } of rows) {
      const shown = fit(g.label, width - left - 4, 12);
      svg.append(s("g", {}, shown === g.label ? null : s("title", {}, g.label), s("text", { x: left, y: y0 + 12, class: "glabel" }, shown)));
      const first = y0 + HEAD;
      g.bars.forEach((b, i) => {
        const by = first + i * STEP, end = x(b.value);
        svg.append(s("rect", { x: left, y: by, width: Math.max(1, end - left), height: BAR, fill: colors[b.key] || COLORS[0], class: b.best ? "bar best" : "bar" },
          s("title", {}, b.title || `${g.label} · ${b.key}: ${format(b.value)}`)));
        const label = labelOf(b), inside = end + 4 + textWidth(label, 10) > width;
        svg.append(s("text", { x: inside ? end - 4 : end + 4, y: by + BAR - 3, class: `value ${inside ? "inside" : ""}`, "text-anchor": inside ? "end" : "start" }, label));
      });
      for (const m of g.marks) {
        const span = Math.max(1, g.bars.length) * STEP;
        svg.append(s("line", { x1: x(m.value), x2: x(m.value), y1: first - 2, y2: first + span, stroke: colors[m.key] || COLORS[5], class: "mark" },
          s("title", {}, m.title || `${g.label} · ${m.key}: ${format(m.value)}`)));
      }
    }
    for (const r of refLines) {
      const rx = x(r.value), after = rx < width / 2;
      svg.append(s("line", { x1: rx, x2: rx, y1: top - 4, y2: bottom, class: "ref" }));
      svg.append(s("text", { x: after ? rx + 4 : rx - 4, y: 12, class: "ref-label", "text-anchor": after ? "start" : "end" }, r.label));
    }
    said.forEach((line, i) => svg.append(s("text", { x: width / 2, y: bottom + 32 + 16 * i, class: "label", "text-anchor": "middle" }, line)));
    return svg;
  };
}

// The value axis of hbars: linear from 0, or logarithmic when the values span more than 100x
// (1 us next to 10 ms: on a linear axis the small bars would vanish). Values outside clamp to it.
function valueAxis(values, left, right) {
  const positive = values.filter((v) => v > 0);
  const lo = Math.min(...positive), hi = Math.max(0, ...values) || 1;
  if (positive.length && hi / lo > 100) {
    const grid = (e0, e1) => Array.from({ length: e1 - e0 + 1 }, (_, i) => [1, 2, 5].map((m) => Number((m * 10 ** (e0 + i)).toPrecision(12)))).flat();
    const e0 = Math.floor(Math.log10(lo)), e1 = Math.ceil(Math.log10(hi));
    const all = grid(e0, e1);
    const a = all.filter((v) => v <= lo).at(-1), b = all.find((v) => v >= hi);  // 1-2-5 ends around the data
    const toX = linear(Math.log10(a), Math.log10(b), left, right);
    const x = (v) => toX(Math.log10(Math.min(b, Math.max(a, v))));
    const fine = all.filter((v) => v >= a && v <= b);
    const decades = fine.filter((v) => Math.abs(Math.log10(v) - Math.round(Math.log10(v))) < 1e-9);
    return { log: true, x, ticks: spaced(fine.length <= (right - left) / 60 ? fine : [a, ...decades, b], x) };
  }
  let ticks = niceTicks(0, hi, Math.max(2, Math.floor((right - left) / 90)));
  if (ticks.length < 2) ticks = [0, hi];
  if (ticks.at(-1) < hi) ticks.push(Number((2 * ticks.at(-1) - ticks.at(-2)).toPrecision(12)));
  const toX = linear(0, ticks.at(-1), left, right);
  const x = (v) => toX(Math.max(0, v));
  return { log: false, x, ticks: spaced(ticks, x) };
}

// The ticks whose labels stay at least 10 px apart, from the left.
function spaced(ticks, x) {
  const out = [];
  const edge = (v) => [x(v) - textWidth(tickLabel(v)) / 2, x(v) + textWidth(tickLabel(v)) / 2];
  for (const v of [...new Set(ticks)].sort((p, q) => p - q)) {
    if (!out.length || edge(v)[0] >= edge(out.at(-1))[1] + 10) out.push(v);
  }
  return out;
}

// Line / step charts. series: [{x, y, color, step, dash, name, width}], points: [{x, y, color, r, label}].
// yTicks and yFormat replace the y axis' ticks and their labels (a log axis draws log10 values).
export function lines({ series, points = [], vlines = [], hlines = [], height = 280, xLabel, yLabel, xDomain, yDomain, yTicks, yFormat }) {
  return (width) => {
    const svg = s("svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "plot", role: "img" });
    const xs = series.flatMap((se) => se.x).concat(points.map((p) => p.x));
    const ys = series.flatMap((se) => se.y).concat(points.map((p) => p.y)).filter((v) => v !== null);
    const [x0, x1] = xDomain || [Math.min(...xs), Math.max(...xs)];
    let [y0, y1] = yDomain || [Math.min(...ys), Math.max(...ys)];
    if (!yDomain) { const pad = (y1 - y0) * 0.06 || 1; y0 -= pad; y1 += pad; }
    const x = linear(x0, x1, PAD.left, width - PAD.right);
    const y = linear(y0, y1, height - PAD.bottom, PAD.top);
    axes(svg, x, y, niceTicks(x0, x1, Math.max(3, Math.floor(width / 90))), yTicks || niceTicks(y0, y1, 5), width, height, { xLabel, yLabel, yFormat });
    const clip = `clip-${++clipCount}`;
    svg.append(s("clipPath", { id: clip }, s("rect", { x: PAD.left, y: PAD.top, width: width - PAD.left - PAD.right, height: height - PAD.top - PAD.bottom })));
    for (const v of vlines) svg.append(s("line", { x1: x(v.x), x2: x(v.x), y1: PAD.top, y2: height - PAD.bottom, class: v.class || "vline" }));
    for (const v of hlines) svg.append(s("line", { x1: PAD.left, x2: width - PAD.right, y1: y(v.y), y2: y(v.y), class: v.class || "vline" }));
    series.forEach((se, k) => {
      let d = "";
      se.x.forEach((xv, i) => {
        const yv = se.y[i];
        if (yv === null) return;
        if (!d) d = `M${x(xv)},${y(yv)}`;
        else d += se.step ? `H${x(xv)}V${y(yv)}` : `L${x(xv)},${y(yv)}`;
      });
      svg.append(s("path", { d, fill: "none", stroke: se.color || COLORS[k % COLORS.length], "stroke-width": se.width || 2, "stroke-dasharray": se.dash, "clip-path": `url(#${clip})` }));
    });
    for (const p of points) {
      svg.append(s("circle", { cx: x(p.x), cy: y(p.y), r: p.r || 4, fill: p.color || COLORS[0], class: "pt" }, s("title", {}, p.label || `${num(p.x)}, ${num(p.y)}`)));
    }
    return svg;
  };
}

// items: [name, colour] or [name, colour, true] for a mark (drawn as a dashed line).
export function legend(items) {
  return h("div", { class: "legend" }, items.map(([name, color, mark]) =>
    h("span", {}, h("i", { class: mark ? "mark" : null, style: mark ? { borderColor: color } : { background: color } }), name)));
}

// Heatmap of a 2-D array on a canvas; null cells are drawn grey. Higher values are greener.
export function heatmap(values, { lo, hi, title, onclick, maxWidth = 560, maxHeight = 320 }) {
  const rows = values.length, cols = values[0]?.length || 0;
  const cw = Math.max(1, Math.min(40, Math.floor(maxWidth / Math.max(cols, 1))));
  const ch = Math.max(1, Math.min(40, Math.floor(maxHeight / Math.max(rows, 1))));
  const canvas = h("canvas", { width: cols * cw, height: rows * ch, class: "heat", title });
  const ctx = canvas.getContext("2d");
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      const v = values[i][j];
      ctx.fillStyle = v === null ? "#d1d5db" : ramp((v - lo) / (hi - lo || 1));
      ctx.fillRect(j * cw, i * ch, cw, ch);
    }
  }
  if (onclick) {
    canvas.addEventListener("click", (e) => {
      const r = canvas.getBoundingClientRect();
      const j = Math.floor(((e.clientX - r.left) / r.width) * cols);
      const i = Math.floor(((e.clientY - r.top) / r.height) * rows);
      onclick(i, j);
    });
  }
  return canvas;
}

// 0 -> red (low QSNR, bad), 1 -> green (good).
export function ramp(t) {
  t = Math.min(1, Math.max(0, t));
  const hue = 5 + t * 135;
  return `hsl(${hue}, 65%, ${48 + 10 * (1 - Math.abs(t - 0.5) * 2)}%)`;
}
