// Value space: the 16 codes on a number line, the value table, the step function and its error,
// and how Gaussian weights use the codes after block scaling.

import { get, latest, post, showError } from "../api.js";
import { COLORS, bars, lines, mount } from "../chart.js";
import { DATA_NAMES } from "./rules.js";
import { card, codeBits, db, debounce, h, note, num, pct, s, select, slider, table, whole } from "../dom.js";

export const title = "Value space";

export async function render(root, { fmt }) {
  const map = await get("/api/mapping");
  const lineBox = h("div", { id: "code-line" });
  const stepBox = h("div", { id: "step-chart" });
  const errBox = h("div", { id: "error-chart" });
  const distStats = h("div", { class: "stat-row", id: "dist-stats" });
  const usageBox = h("div", { id: "code-usage" });
  const scaledBox = h("div", { id: "scaled-hist" });
  const state = { sigma: 1, block_size: fmt.block_size, scale_rule: fmt.scale_rules[0], distribution: "normal", n: 65536 };

  root.append(
    h("div", { class: "view-head" }, h("h1", {}, title),
      note("E2M1 has 16 codes and 15 distinct values (+0 and −0). Positive codes above the line, negative below; each is wired to where its value sits.")),
    card("The 16 codes on the number line", lineBox),
    h("div", { class: "grid2" },
      card("Continuous → discrete (scale 1)", stepBox,
        note("Each x is quantized by mxfp4.quantize at scale 1. Dashed lines: the rounding boundaries (ties go to the even mantissa); beyond ±6 values saturate.")),
      card("Quantization error (decoded − x)", errBox,
        note("The error grows with the gap between neighbouring values: ±0.25 near zero, ±1 between 4 and 6, and unbounded past ±6 (clipping)."))),
    card("Value table", valueTable(fmt)),
    card("Distribution: Gaussian weights on the codes",
      h("div", { class: "controls" },
        slider("σ", { min: -2, max: 2, step: 0.1, value: 0, id: "sigma", show: (v) => num(10 ** v, 3) }, (v) => { state.sigma = 10 ** v; refresh(); }),
        select("block size", [8, 16, 32, 64, 128, 256], state.block_size, (v) => { state.block_size = Number(v); refresh(); }, { id: "block-size" }),
        select("scale rule", fmt.scale_rules, state.scale_rule, (v) => { state.scale_rule = v; refresh(); }, { id: "dist-rule" }),
        select("data", fmt.distributions.map((d) => [d, DATA_NAMES[d] || d]), state.distribution, (v) => { state.distribution = v; refresh(); }, { id: "dist-kind" })),
      distStats,
      h("div", { class: "grid2" }, h("div", {}, h("h3", {}, "How often each code is used"), usageBox),
        h("div", {}, h("h3", {}, "Values ÷ block scale, with the E2M1 grid"), scaledBox)),
      note("Block scaling absorbs σ: code usage barely moves with it. With ceil or mse, larger blocks put more elements far below the block's maximum and QSNR drops; ",
        "with floor, small blocks clip more often (their maximum lands above 6·scale), so QSNR first rises with block size.")));

  mount(lineBox, codeLine(fmt));
  const bounds = fmt.rne_boundaries.flatMap((b) => [b, -b]).map((x) => ({ x }));
  mount(stepBox, lines({
    series: [{ x: [map.x[0], map.x.at(-1)], y: [map.x[0], map.x.at(-1)], color: "#c5cbd5", dash: "5 4", width: 1.5 },
      { x: map.x, y: map.q, color: COLORS[0], step: true }],
    vlines: bounds, xLabel: "input x", yLabel: "decoded value", height: 300,
  }));
  mount(errBox, lines({ series: [{ x: map.x, y: map.error, color: COLORS[1], width: 1.5 }], vlines: bounds,
    hlines: [{ y: 0 }], xLabel: "input x", yLabel: "error", height: 300 }));

  const fetchDist = latest(() => post("/api/distribution", state));
  const refresh = debounce(async () => {
    try {
      const r = await fetchDist();
      if (!r) return;
      showError(null);
      distStats.replaceChildren(
        stat("QSNR", db(r.qsnr_db), "dist-qsnr"), stat("clipped", pct(r.clipped_fraction, 3)),
        stat("elements", whole(r.n)), stat("blocks", whole(r.n / r.block_size)));
      const order = fmt.codes.map((c) => c.code).sort((a, b) => fmt.codes[a].value - fmt.codes[b].value || b - a);
      usageBox.replaceChildren();
      mount(usageBox, bars({
        labels: order.map((c) => (c === 8 ? "−0" : num(fmt.codes[c].value, 2))),
        series: [{ name: "share", values: order.map((c) => r.code_counts[c] / r.n) }],
        format: (v) => pct(v, 1), yLabel: "share of elements", xLabel: "code value", height: 240, valueLabels: false,
      }));
      const hist = r.scaled_histogram;
      const w = (hist.hi - hist.lo) / hist.counts.length;
      scaledBox.replaceChildren();
      mount(scaledBox, lines({
        series: [{ x: hist.counts.map((_, i) => hist.lo + (i + 1) * w), y: hist.counts, color: COLORS[2], step: true, width: 1.5 }],
        vlines: [...new Set(fmt.codes.map((c) => c.value))].map((x) => ({ x })),
        xLabel: "x ÷ scale", yLabel: "elements", height: 240, xDomain: [hist.lo, hist.hi],
      }));
    } catch (err) { showError(err); }
  }, 150);
  refresh();
}

function stat(label, value, id) {
  return h("div", { class: "stat" }, h("b", { id }, value), h("span", {}, label));
}

function valueTable(fmt) {
  return table(["code", "bits", "sign", "exponent", "mantissa", "kind", "value"],
    fmt.codes.map((c) => [
      `0x${c.code.toString(16).toUpperCase()}`, codeBits(c.bits), String(c.sign), c.exponent_bits, String(c.mantissa),
      c.value === 0 ? (c.negative_zero ? "negative zero" : "zero") : c.subnormal ? "subnormal" : "normal",
      num(c.value)]),
    { class: "data", id: "value-table" });
}

// Positive codes above the axis, negative below, each joined to its value on the line.
function codeLine(fmt) {
  return (width) => {
    const height = 200, pad = width < 500 ? 6 : 28, mid = 100, lim = fmt.e2m1_max * 1.05;
    const x = (v) => pad + ((v + lim) / (2 * lim)) * (width - 2 * pad);
    const svg = s("svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "plot" });
    svg.append(s("line", { x1: pad, x2: width - pad, y1: mid, y2: mid, class: "axis" }));
    const pos = fmt.codes.filter((c) => c.sign === 0), neg = fmt.codes.filter((c) => c.sign === 1).reverse();
    const slot = (width - 2 * pad) / 8;
    const bw = Math.min(50, slot - 4), small = bw < 44;
    for (const [row, y0, dir] of [[pos, 28, 1], [neg, 172, -1]]) {
      row.forEach((c, i) => {
        const bx = pad + slot * (i + 0.5) + (dir < 0 ? 0 : 0);
        const vx = x(c.value);
        svg.append(s("path", { d: `M${bx},${y0 + dir * 16}L${vx},${mid - dir * 5}`, class: "flow" }));
        svg.append(s("circle", { cx: vx, cy: mid, r: 3.5, fill: c.sign ? "#d9485f" : "#3b6fd8" }));
        const g = s("g", {}, s("title", {}, `code ${c.bits} = ${num(c.value)}`));
        g.append(s("rect", { x: bx - bw / 2, y: y0 - 16, width: bw, height: 32, rx: 5, class: "node" }));
        const t = s("text", { x: bx, y: y0 - 2, "text-anchor": "middle", class: "nlabel mono", style: small ? { fontSize: "9px" } : {} });
        t.append(s("tspan", { fill: "#d9485f" }, c.bits[0]), s("tspan", { fill: "#3b6fd8" }, c.bits.slice(1, 3)), s("tspan", { fill: "#2e9d68" }, c.bits[3]));
        g.append(t, s("text", { x: bx, y: y0 + 12, "text-anchor": "middle", class: "tick" }, c.code === 8 ? "−0" : num(c.value, 2)));
        svg.append(g);
      });
    }
    for (const v of [-6, -4, -2, 0, 2, 4, 6]) {
      svg.append(s("text", { x: x(v), y: mid + 16, class: "tick", "text-anchor": "middle", opacity: 0.6 }, String(v)));
    }
    return svg;
  };
}
