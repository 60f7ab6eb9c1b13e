// Scale rules compared: floor / ceil / even / mse on the same data.

import { latest, post, showError } from "../api.js";
import { COLORS, bars, legend, lines, mount } from "../chart.js";
import { button, card, db, debounce, h, note, num, pct, select, slider, table, whole } from "../dom.js";

export const title = "Scale rules";

export const DATA_NAMES = { normal: "Gaussian", laplace: "Laplace", student_t: "Student-t (3 dof)", outliers: "Gaussian + outliers" };

const EXPLAIN = {
  floor: "OCP MX v1.0: e = floor(log2 amax) − 2. Exact powers of two fit; amax above 6·2^e clips.",
  ceil: "Smallest e with amax ≤ 6·2^e: never clips, but wastes range on most blocks.",
  even: "amax rounded to one mantissa bit (ties to even), then floor: clips less than floor.",
  mse: "Per block, floor or floor+1, whichever gives the smaller squared error.",
};

export async function render(root, { fmt }) {
  const state = { distribution: "student_t", sigma: 1, n: 32768, block_size: fmt.block_size, rounding: "nearest", seed: 0 };
  const out = { table: h("div", { id: "rules-table" }), qsnr: h("div", { id: "rules-qsnr" }),
    clipped: h("div", { id: "rules-clipped" }), scales: h("div", { id: "rules-scales" }), input: h("div", { id: "rules-input" }) };

  root.append(
    h("div", { class: "view-head" }, h("h1", {}, "Scale rules compared"),
      note("The same data quantized with each scale rule of mxfp4.quantize: how many elements clip, the QSNR, and which block exponents are chosen.")),
    card(null,
      h("div", { class: "controls" },
        select("data", fmt.distributions.map((d) => [d, DATA_NAMES[d] || d]), state.distribution, (v) => { state.distribution = v; refresh(); }, { id: "rules-data" }),
        slider("σ", { min: -2, max: 2, step: 0.1, value: 0, id: "rules-sigma", show: (v) => num(10 ** v, 3) }, (v) => { state.sigma = 10 ** v; refresh(); }),
        select("elements", [4096, 32768, 262144], state.n, (v) => { state.n = Number(v); refresh(); }, { id: "rules-n" }),
        select("block size", [16, 32, 64, 128], state.block_size, (v) => { state.block_size = Number(v); refresh(); }, { id: "rules-block" }),
        select("rounding", fmt.roundings, state.rounding, (v) => { state.rounding = v; refresh(); }, { id: "rules-rounding" }),
        button("New sample", () => { state.seed += 1; refresh(); }, { id: "rules-resample" })),
      out.table),
    h("div", { class: "grid2" }, card("QSNR (higher is better)", out.qsnr), card("Clipped elements", out.clipped)),
    h("div", { class: "grid2" }, card("Block scale exponents chosen", out.scales), card("The data", out.input)),
    card("The rules", table(["rule", "how the block exponent e is chosen"],
      fmt.scale_rules.map((r) => [r, h("span", { class: "wrap" }, EXPLAIN[r] || "")]), { class: "data explain" })));

  const fetchRules = latest(() => post("/api/rules", state));
  const refresh = debounce(async () => {
    try {
      const r = await fetchRules();
      if (!r) return;
      showError(null);
      show(r);
    } catch (err) { showError(err); }
  }, 150);

  function show(r) {
    const rules = r.rules;
    const best = Math.max(...rules.map((x) => x.qsnr_db ?? Infinity));
    out.table.replaceChildren(table(["rule", "QSNR", "clipped", "clipped %", "MSE", "max |error|", "mean error (bias)"],
      rules.map((x) => h("tr", { "data-rule": x.scale_rule },
        h("td", {}, x.scale_rule, x.qsnr_db === best ? h("span", { class: "badge yes", style: { marginLeft: "6px" } }, "best") : ""),
        h("td", {}, db(x.qsnr_db)), h("td", {}, whole(x.clipped)), h("td", {}, pct(x.clipped_fraction, 3)),
        h("td", {}, num(x.mse, 4)), h("td", {}, num(x.max_abs_error, 4)), h("td", {}, num(x.mean_error, 3)))),
      { class: "data" }),
    note(`${whole(r.n)} values (${r.distribution}), blocks of ${r.block_size}, ${r.rounding} rounding.`));
    const labels = rules.map((x) => x.scale_rule);
    const colors = rules.map((_, i) => COLORS[i % COLORS.length]);
    // Both axes start at 0: a QSNR axis cut at the smallest value would make 0.3 dB look like 3x.
    for (const [box, values, fmtv, label] of [[out.qsnr, rules.map((x) => x.qsnr_db), (v) => `${v.toFixed(2)} dB`, "QSNR (dB)"],
      [out.clipped, rules.map((x) => x.clipped_fraction), (v) => pct(v, 2), "share clipped"]]) {
      box.replaceChildren();
      mount(box, bars({ labels, series: [{ values, color: COLORS[0] }], format: fmtv, yLabel: label, height: 220, valueLabels: true }));
    }
    const exps = [...new Set(rules.flatMap((x) => x.scale_exponents.map((e) => e.exponent)))].sort((a, b) => a - b);
    out.scales.replaceChildren(legend(labels.map((l, i) => [l, colors[i]])));
    mount(out.scales, bars({
      labels: exps.map((e) => String(e)),
      series: rules.map((x, i) => ({ name: x.scale_rule, color: colors[i],
        values: exps.map((e) => x.scale_exponents.find((se) => se.exponent === e)?.blocks || 0) })),
      format: (v) => `${v} blocks`, xLabel: "scale exponent e (scale = 2^e)", yLabel: "blocks", height: 240, valueLabels: false,
    }));
    const hist = r.input_histogram;
    const w = (hist.hi - hist.lo) / hist.counts.length;
    out.input.replaceChildren();
    mount(out.input, lines({ series: [{ x: hist.counts.map((_, i) => hist.lo + (i + 1) * w), y: hist.counts, step: true, color: COLORS[2], width: 1.5 }],
      xLabel: "value", yLabel: "count", height: 240, xDomain: [hist.lo, hist.hi] }));
  }
  refresh();
}
