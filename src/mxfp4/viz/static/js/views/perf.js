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
      h("div", { class: "grid2" }, h("div", {},
        table(["model", "params", "in MXFP4", "BF16", "MXFP4", "ratio", "one 80 GB GPU"],
          mem.models.map((m) => [m.model, count(m.params), `${(100 * m.mxfp4_params / m.params).toFixed(1)}%`, bytes(m.bf16_bytes),
            bytes(m.mxfp4_bytes), `${m.ratio.toFixed(2)}×`, h("span", { class: `badge ${m.fits_80gb ? "yes" : "no"}` }, m.fits_80gb ? "fits" : "no")]),
          { class: "data", id: "memory-table" }),
        note(...mem.models.map((m) => `${m.model}: ${m.note}. `))),
      h("div", {}, legend([["BF16", COLORS[1]], ["MXFP4", COLORS[2]]]), memChart))),
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

function record(b) {
  const env = b.environment || {};
  const numeric = b.columns.filter((c) => b.rows.some((r) => isNum(r[c])));
  const text = b.columns.filter((c) => !numeric.includes(c) && new Set(b.rows.map((r) => String(r[c] ?? ""))).size > 1);
  const seriesCol = text.find((c) => /backend|impl|kernel|method|variant|baseline|library/i.test(c)
    && new Set(b.rows.map((r) => r[c])).size <= 6);
  const labelCols = text.filter((c) => c !== seriesCol);
  const preferred = numeric.find((c) => /per_s|tflops|gb_?s|throughput|speedup/i.test(c)) || numeric.find((c) => /ms|us|latency|time/i.test(c)) || numeric[0];
  const chartBox = h("div", {});
  const meta = ["device", "date", "torch", "triton"].filter((k) => env[k]).map((k) => `${k} ${env[k]}`).join(" · ");
  const draw = (metric) => {
    chartBox.replaceChildren();
    if (!metric) return;
    const labelOf = (r) => labelCols.map((c) => r[c]).join(" · ") || b.title;
    const labels = [...new Set(b.rows.map(labelOf))];
    const names = seriesCol ? [...new Set(b.rows.map((r) => r[seriesCol]))] : [metric];
    const series = names.map((name, i) => ({ name, color: COLORS[i % COLORS.length],
      values: labels.map((l) => b.rows.find((r) => labelOf(r) === l && (!seriesCol || r[seriesCol] === name))?.[metric] ?? null) }));
    if (seriesCol) chartBox.append(legend(names.map((n, i) => [`${seriesCol}: ${n}`, COLORS[i % COLORS.length]])));
    mount(chartBox, bars({ labels, series, format: (v) => num(v, 4), yLabel: metric, height: 260 }));
  };
  const section = h("div", { class: "bench", "data-file": b.file },
    h("h3", {}, b.title),
    h("p", { class: "muted" }, meta || "environment not recorded", ` · ${b.file} (${b.source})`),
    numeric.length ? h("div", { class: "controls" }, select("metric", numeric, preferred, draw)) : "",
    chartBox,
    table(b.columns, b.rows.map((r) => b.columns.map((c) => (isNum(r[c]) ? num(r[c], 4) : String(r[c] ?? ""))))),
    b.notes ? note(b.notes) : "");
  draw(preferred);
  return section;
}
