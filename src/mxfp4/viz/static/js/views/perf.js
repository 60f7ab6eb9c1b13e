// Performance: memory by model size, and the benchmark results the project has recorded.

import { get } from "../api.js";
import { COLORS, bars, legend, mount } from "../chart.js";
import { bytes, card, count, emptyState, h, note, num, select, table } from "../dom.js";

export const title = "Performance";

export async function render(root) {
  const [mem, bench] = await Promise.all([get("/api/memory/presets"), get("/api/benchmarks")]);
  const memChart = h("div", { id: "model-memory-chart" });
  root.append(
    h("div", { class: "view-head" }, h("h1", {}, title),
      note("Memory from real bit counts (4-bit codes + one 8-bit scale per 32 values = 4.25 bits), and the benchmarks recorded in docs/benchmarks.")),
    card("Memory by model size (weights)",
      h("div", {},
        table(["model", "params", "in MXFP4", "BF16", "MXFP4", "ratio", "one 80 GB GPU"],
          mem.models.map((m) => [m.model, count(m.params), `${(100 * m.mxfp4_params / m.params).toFixed(1)}%`, bytes(m.bf16_bytes),
            bytes(m.mxfp4_bytes), `${m.ratio.toFixed(2)}×`, h("span", { class: `badge ${m.fits_80gb ? "yes" : "no"}` }, m.fits_80gb ? "fits" : "no")]),
          { class: "data", id: "memory-table" }),
        note(...mem.models.map((m) => `${m.model}: ${m.note}. `))),
      h("div", {}, legend([["BF16", COLORS[1]], ["MXFP4", COLORS[2]]]), memChart)),
    card("Benchmarks", ...benchmarks(bench)));
  mount(memChart, bars({
    labels: mem.models.map((m) => m.model.split(" ")[0]),
    series: [{ name: "BF16", values: mem.models.map((m) => m.bf16_bytes / 1e9), color: COLORS[1] },
      { name: "MXFP4", values: mem.models.map((m) => m.mxfp4_bytes / 1e9), color: COLORS[2] }],
    format: (v) => `${v.toFixed(1)} GB`, yLabel: "GB", height: 260, refLine: { value: mem.gpu_bytes / 1e9, label: "80 GB" }, valueLabels: true,
  }));
}

function benchmarks(bench) {
  const out = [];
  if (!bench.benchmarks.length) {
    out.push(emptyState("No benchmark results recorded yet.", bench.how_to, `Looked in: ${bench.searched.join(", ") || "nowhere"}.`));
  }
  for (const b of bench.benchmarks) out.push(record(b));
  if (bench.skipped.length) out.push(note(`Skipped: ${bench.skipped.map((s) => `${s.file} (${s.reason})`).join("; ")}.`));
  return out;
}

const isNum = (v) => typeof v === "number" && Number.isFinite(v);
const empty = (v) => v === "" || v === null || v === undefined;
// Which numeric columns are measurements (times, rates, ratios) rather than parameters (M, size).
const METRIC = /(^|_)(ms|us|ns|s)$|per_s|tflops|gb_?s|throughput|speedup|frac|^vs_|ratio|qsnr|db$|error|bytes/i;
const distinct = (rows, c) => [...new Set(rows.map((r) => String(r[c] ?? "")))];

function record(b) {
  const env = b.environment || {};
  const numeric = b.columns.filter((c) => b.rows.some((r) => isNum(r[c])) && b.rows.every((r) => isNum(r[c]) || empty(r[c])));
  const metrics = numeric.filter((c) => METRIC.test(c)).length ? numeric.filter((c) => METRIC.test(c)) : numeric;
  const params = b.columns.filter((c) => !metrics.includes(c) && distinct(b.rows, c).length > 1);
  const facetCol = params.find((c) => /^(op|operation|suite|benchmark|kind)$/i.test(c) && distinct(b.rows, c).length <= 8);
  const seriesCol = params.find((c) => c !== facetCol && /backend|impl|kernel|method|variant|baseline|library/i.test(c)
    && distinct(b.rows, c).length <= 6);
  const labelCols = params.filter((c) => c !== facetCol && c !== seriesCol);
  const preferred = metrics.find((c) => /per_s|tflops|gb_?s|throughput|speedup/i.test(c)) || metrics.find((c) => /(^|_)(ms|us|ns)$|latency|time/i.test(c)) || metrics[0];
  const facets = facetCol ? distinct(b.rows, facetCol) : [];
  const state = { metric: preferred,
    facet: facets.length ? facets.reduce((a, f) => (b.rows.filter((r) => String(r[facetCol]) === f).length > b.rows.filter((r) => String(r[facetCol]) === a).length ? f : a)) : null };
  const chartBox = h("div", {});
  const meta = ["device", "date", "torch", "triton"].filter((k) => env[k]).map((k) => `${k} ${env[k]}`).join(" · ");
  const draw = () => {
    chartBox.replaceChildren();
    const metric = state.metric;
    if (!metric) return;
    const rows = facetCol ? b.rows.filter((r) => String(r[facetCol]) === state.facet) : b.rows;
    const labelOf = (r) => labelCols.filter((c) => !empty(r[c])).map((c) => (labelCols.length > 1 ? `${c} ${r[c]}` : r[c])).join(" · ") || state.facet || b.title;
    const labels = [...new Set(rows.map(labelOf))];
    const pick = (l, col, name) => rows.find((r) => labelOf(r) === l && (!name || String(r[seriesCol]) === name) && isNum(r[col]))?.[col] ?? null;
    const names = seriesCol ? distinct(rows, seriesCol) : [null];
    const series = names.map((name) => ({ name: name ? `${seriesCol} ${name}` : metric, values: labels.map((l) => pick(l, metric, name)) }));
    for (const base of metrics.filter((c) => c !== metric && c.endsWith(`_${metric}`))) {
      const values = labels.map((l) => pick(l, base, null));
      if (values.some((v) => v !== null)) series.push({ name: base.slice(0, -metric.length - 1), values });
    }
    series.forEach((se, i) => { se.color = COLORS[i % COLORS.length]; });
    if (series.length > 1) chartBox.append(legend(series.map((se) => [se.name, se.color])));
    mount(chartBox, bars({ labels, series, format: (v) => num(v, 4), yLabel: metric, height: 260 }));
  };
  const section = h("div", { class: "bench", "data-file": b.file },
    h("h3", {}, b.title),
    h("p", { class: "muted" }, meta || "environment not recorded", ` · ${b.file} (${b.source})`),
    h("div", { class: "controls" },
      metrics.length ? select("metric", metrics, state.metric, (v) => { state.metric = v; draw(); }, { class: "metric" }) : "",
      facetCol ? select(facetCol, facets, state.facet, (v) => { state.facet = v; draw(); }, { class: "facet" }) : ""),
    chartBox,
    table(b.columns, b.rows.map((r) => b.columns.map((c) => (isNum(r[c]) && !Number.isInteger(r[c]) ? num(r[c], 4) : String(r[c] ?? ""))))),
    b.notes ? note(b.notes) : "");
  draw();
  return section;
}
