// Performance: memory by model size, and the benchmark results the project has recorded.
// How a record is drawn (which columns name the operation, the variants, the measurements, and
// plain words for each) comes with it from the server: viz/bench_layout.py.

import { get } from "../api.js";
import { COLORS, hbars, legend, mount } from "../chart.js";
import { button, bytes, card, count, emptyState, h, note, select, table, whole } from "../dom.js";

export const title = "Performance";

export async function render(root) {
  const [mem, bench] = await Promise.all([get("/api/memory/presets"), get("/api/benchmarks")]);
  const memChart = h("div", { id: "model-memory-chart" });
  const colors = { BF16: COLORS[1], MXFP4: COLORS[2] };
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
      h("div", {}, legend(Object.entries(colors)), memChart)),
    card("Benchmarks", ...benchmarks(bench)));
  mount(memChart, hbars({
    groups: mem.models.map((m) => ({ label: m.model, marks: [],
      bars: [{ key: "BF16", value: m.bf16_bytes / 1e9 }, { key: "MXFP4", value: m.mxfp4_bytes / 1e9 }] })),
    colors, format: (v) => `${v.toFixed(1)} GB`, axisLabel: "weights (GB)",
    refLines: [{ value: mem.gpu_bytes / 1e9, label: `one ${bytes(mem.gpu_bytes)} GPU` }],
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
const text = (v) => (v === "" || v === null || v === undefined ? "" : String(v));
const distinct = (rows, c) => [...new Set(rows.map((r) => text(r[c])))];

// A measurement: four significant digits with thousands separators (10,560, 36.69, 0.003093).
function measure(v) {
  if (v !== 0 && Math.abs(v) < 1e-3) return v.toExponential(2);
  return Number(v.toPrecision(4)).toLocaleString("en-US", { maximumFractionDigits: 6 });
}

function cell(v) {
  if (typeof v === "boolean") return v ? "yes" : "no";
  if (isNum(v)) return Number.isInteger(v) ? whole(v) : measure(v);
  return text(v).replace("->", " → ");
}

// An operation in words, "4096 → 14336, M = 1": a bare number gets its column's name.
function operationLabel(r, cols) {
  return cols.filter((c) => text(r[c])).map((c) => (isNum(r[c]) ? `${c} = ${whole(r[c])}` : cell(r[c]))).join(", ");
}

function record(b) {
  const L = b.layout, env = b.environment || {};
  const state = { quantity: L.default, facet: {} };
  const controls = h("div", { class: "controls" }), chartBox = h("div", { class: "bench-chart" });
  const meta = ["device", "date", "torch", "triton"].filter((k) => env[k]).map((k) => `${k} ${env[k]}`).join(" · ");
  const aside = (r) => [...L.info, ...L.details].filter((c) => text(r[c])).map((c) => `${L.words[c]}: ${cell(r[c])}`);
  const keyOf = (m, r) => (m.own && L.series ? text(r[L.series]) : m.name);

  const draw = () => {
    let rows = b.rows;
    const selects = [];
    for (const c of L.facets) {  // each facet offers the values left by the ones before it
      const values = distinct(rows, c);
      if (!values.includes(state.facet[c])) {
        state.facet[c] = values.reduce((a, v) => (rows.filter((r) => text(r[c]) === v).length > rows.filter((r) => text(r[c]) === a).length ? v : a));
      }
      selects.push(select(L.words[c], values.map((v) => [v, cell(v)]), state.facet[c], (v) => { state.facet[c] = v; draw(); },
        { class: "facet", "data-column": c }));
      rows = rows.filter((r) => text(r[c]) === state.facet[c]);
    }
    const q = L.quantities.find((x) => x.key === state.quantity);
    controls.replaceChildren(
      L.quantities.length ? select("measure", L.quantities.map((x) => [x.key, x.words]), state.quantity, (v) => { state.quantity = v; draw(); }, { class: "metric" }) : "",
      ...selects);
    chartBox.replaceChildren();
    if (!q) return;
    const keys = [...new Set(q.members.flatMap((m) => b.rows.filter((r) => isNum(r[m.column])).map((r) => keyOf(m, r))))];
    const colors = Object.fromEntries(keys.map((k, i) => [k, COLORS[i % COLORS.length]]));
    const groupCols = L.operation.filter((c) => !L.facets.includes(c));
    const byOperation = new Map();
    for (const r of rows) {
      const k = JSON.stringify(groupCols.map((c) => text(r[c])));
      byOperation.set(k, [...(byOperation.get(k) || []), r]);
    }
    const groups = [...byOperation.values()].map((G) => {
      const label = operationLabel(G[0], groupCols) || operationLabel(G[0], L.operation) || b.title;
      const bars = [], marks = [];
      for (const m of q.members) {
        const measured = G.filter((r) => isNum(r[m.column]));
        const entry = (r) => ({ key: keyOf(m, r), value: r[m.column],
          title: [`${label} · ${keyOf(m, r)}: ${measure(r[m.column])}`, ...(m.own ? aside(r) : [])].join("\n") });
        // a row's own measurement is a bar per row; a reference (cuBLAS, floor) once per value
        const once = m.own ? measured : measured.filter((r, i) => measured.findIndex((o) => o[m.column] === r[m.column]) === i);
        (m.mark ? marks : bars).push(...once.map(entry));
      }
      const runs = bars.filter((x) => x.key === bars[0]?.key);  // one variant measured several ways
      if (runs.length > 1 && q.better) {
        const pick = q.better === "lower" ? Math.min : Math.max;
        const best = pick(...runs.map((x) => x.value));
        runs.find((x) => x.value === best).best = true;
      }
      return { label, bars, marks };
    }).filter((g) => g.bars.length || g.marks.length);
    const shown = new Set(groups.flatMap((g) => [...g.bars, ...g.marks].map((x) => x.key)));
    const marks = new Set(q.members.filter((m) => m.mark).map((m) => m.name));
    if (shown.size > 1) chartBox.append(legend(keys.filter((k) => shown.has(k)).map((k) => [k, colors[k], marks.has(k)])));
    mount(chartBox, hbars({ groups, colors, format: measure, axisLabel: q.better ? `${q.words}, ${q.better} is better` : q.words }));
    chartBox.append(note(`Grouped by ${groupCols.map((c) => L.words[c]).join(", ") || "run"}`,
      L.details.length ? `; hover a bar for its ${L.details.map((c) => L.words[c]).join(", ")}` : "", "."));
  };
  const section = h("div", { class: "bench", "data-file": b.file },
    h("h3", {}, b.title),
    h("p", { class: "muted" }, meta || "environment not recorded", ` · ${b.file} (${b.source})`),
    controls, chartBox, dataTable(b, L, aside), b.notes ? note(b.notes) : "");
  draw();
  return section;
}

// The record as a table: plain-word headers (the column name in the tooltip); long text such as
// tile configurations in a detail row under its row, opened with the row's + button.
function dataTable(b, L, aside) {
  const numeric = (c) => b.rows.some((r) => isNum(r[c]));
  const cols = b.columns.filter((c) => !L.details.includes(c) && b.rows.some((r) => text(r[c])));
  const toggles = L.details.length > 0;
  const rows = b.rows.flatMap((r) => {
    const more = L.details.filter((c) => text(r[c])).map((c) => `${L.words[c]}: ${text(r[c])}`);
    const tr = h("tr", { title: aside(r).join("\n") || null }, cols.map((c) => h("td", { class: numeric(c) ? "num" : null }, cell(r[c]))));
    if (!toggles) return [tr];
    if (!more.length) { tr.prepend(h("td", {})); return [tr]; }
    const detail = h("tr", { class: "detail", hidden: true }, h("td", { colspan: cols.length + 1 }, more.join(" · ")));
    tr.prepend(h("td", {}, button("+", (e) => {
      detail.hidden = !detail.hidden;
      e.target.textContent = detail.hidden ? "+" : "−";
      e.target.setAttribute("aria-expanded", String(!detail.hidden));
    }, { class: "more", "aria-expanded": "false", title: `show the ${L.details.map((c) => L.words[c]).join(", ")}` })));
    return [tr, detail];
  });
  const heads = cols.map((c) => h("span", { title: c, class: numeric(c) ? "num" : null }, L.words[c]));
  return table(toggles ? ["", ...heads] : heads, rows, { class: "data bench-table" });
}
