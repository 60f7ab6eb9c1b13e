// Block quantizer: up to 32 BF16 inputs -> E2M1 codes, one shared E8M0 scale, errors, compression.

import { latest, post, showError } from "../api.js";
import { mount, COLORS } from "../chart.js";
import { button, card, codeBits, db, debounce, h, note, num, pow2, s, select, table } from "../dom.js";

export const title = "Block quantizer";

function gaussian(n, sigma) {
  const out = [];
  while (out.length < n) {
    const u = 1 - Math.random(), v = Math.random();
    const r = Math.sqrt(-2 * Math.log(u));
    out.push(r * Math.cos(2 * Math.PI * v) * sigma, r * Math.sin(2 * Math.PI * v) * sigma);
  }
  return out.slice(0, n).map((x) => Number(x.toPrecision(4)));
}

function parseList(text) {
  return text.split(/[\s,;]+/).filter((t) => t.length);
}

export async function render(root, { fmt, params }) {
  const maxN = fmt.max_block_values;
  const given = params.get("values");
  const state = {
    values: (given ? parseList(given) : fmt.example.map(String)).slice(0, maxN),
    rule: fmt.scale_rules.includes(params.get("rule")) ? params.get("rule") : fmt.scale_rules[0],
    rounding: fmt.roundings[0],
    seed: 0,
  };
  const source = params.get("from");

  const inputs = h("div", { class: "inputs", id: "inputs" });
  const inputMsg = h("p", { class: "field-error", id: "input-msg", role: "status" });
  const pasteBox = h("textarea", { id: "paste-text", rows: 3, placeholder: "numbers separated by spaces, commas or new lines" });
  const pasteArea = h("div", { class: "paste", hidden: true },
    pasteBox, button("Apply", () => { state.values = parseList(pasteBox.value); pasteArea.hidden = true; rebuild(); }, { id: "paste-apply" }));
  const sigmaIn = h("input", { type: "number", value: 1, min: 0.001, step: "any", id: "sigma", class: "small" });
  const countIn = h("input", { type: "number", value: maxN, min: 1, max: maxN, id: "count", class: "small" });
  const seedField = h("label", { class: "field", hidden: true }, h("span", {}, "seed"),
    h("input", { type: "number", value: 0, min: 0, class: "small", id: "seed", oninput: (e) => { state.seed = Number(e.target.value) || 0; update(); } }));

  const out = { codes: h("div", { class: "code-chips", id: "codes" }), scale: h("div", { class: "kv", id: "scale" }),
    ratio: h("div", { class: "kv", id: "ratio" }), line: h("div", { id: "number-line" }), table: h("div", { id: "elements" }) };

  root.append(
    h("div", { class: "view-head" }, h("h1", {}, title),
      note("Each element becomes a 4-bit E2M1 code; the block shares one 8-bit power-of-two scale (E8M0). ",
        "Computed by mxfp4.quantize on the server.")),
    source ? note(`Block from ${source}.`) : "",
    h("div", { class: "grid2" },
      card("Input block (BF16)",
        h("div", { class: "controls" },
          select("scale rule", fmt.scale_rules, state.rule, (v) => { state.rule = v; update(); }, { id: "rule" }),
          select("rounding", fmt.roundings, state.rounding, (v) => { state.rounding = v; seedField.hidden = v !== "stochastic"; update(); }, { id: "rounding" }),
          seedField),
        inputs, inputMsg,
        h("div", { class: "controls" },
          button("+ value", () => { if (state.values.length < maxN) { state.values.push("0"); rebuild(); } }, { id: "add" }),
          button("− value", () => { if (state.values.length > 1) { state.values.pop(); rebuild(); } }, { id: "remove" }),
          button("Seed example", () => { state.values = fmt.example.map(String); rebuild(); }, { id: "example" }),
          button("Paste…", () => { pasteArea.hidden = !pasteArea.hidden; pasteBox.focus(); }, { id: "paste" })),
        h("div", { class: "controls" },
          button("Random normal", () => {
            const n = Math.min(maxN, Math.max(1, Math.round(Number(countIn.value) || maxN)));
            state.values = gaussian(n, Math.abs(Number(sigmaIn.value)) || 1).map(String);
            rebuild();
          }, { id: "random" }),
          h("label", { class: "field inline" }, h("span", {}, "n"), countIn),
          h("label", { class: "field inline" }, h("span", {}, "σ"), sigmaIn)),
        pasteArea),
      card("MXFP4 block", h("h3", {}, "Codes (sign | exponent | mantissa)"), out.codes, out.scale, out.ratio, out.line)),
    card("Elements", out.table));

  function rebuild() {
    inputs.replaceChildren(...state.values.map((v, i) =>
      h("label", { class: "cell" }, h("span", {}, `x${i}`),
        h("input", { type: "text", inputmode: "decimal", value: v, "data-index": i, "aria-label": `value ${i}`,
          oninput: (e) => { state.values[i] = e.target.value; update(); } }))));
    update();
  }

  const quantize = latest((body) => post("/api/quantize", body));
  const update = debounce(async () => {
    const bad = [];
    const values = state.values.map((t, i) => {
      const x = Number(String(t).trim());
      const ok = String(t).trim() !== "" && Number.isFinite(x);
      inputs.querySelector(`[data-index="${i}"]`)?.classList.toggle("invalid", !ok);
      if (!ok) bad.push(`x${i} ("${t}")`);
      return x;
    });
    if (state.values.length > maxN) bad.push(`more than ${maxN} values`);
    inputMsg.textContent = bad.length ? `Not a number: ${bad.join(", ")}. Fix it to quantize.` : "";
    if (bad.length) return;
    try {
      const r = await quantize({ values, scale_rule: state.rule, rounding: state.rounding, seed: state.seed });
      if (!r) return;
      showError(null);
      show(r);
    } catch (err) { showError(err); }
  }, 80);

  function show(r) {
    const sc = r.scale;
    out.codes.replaceChildren(...r.elements.map((e) => h("span", { class: "chip", title: `x${e.index} → ${num(e.decoded)}` }, codeBits(e.bits, { class: "bits code" }))));
    out.scale.replaceChildren(
      h("div", {}, h("span", { class: "k" }, "shared scale"), h("span", { class: "v", id: "scale-value" }, num(sc.value))),
      h("div", {}, h("span", { class: "k" }, "E8M0 byte"), h("span", { class: "v mono" }, `${sc.bits} = ${sc.byte}`)),
      h("div", {}, h("span", { class: "k" }, "exponent"), h("span", { class: "v" }, `${pow2(sc.exponent)} (byte − ${fmt.e8m0_bias})`)),
      h("div", {}, h("span", { class: "k" }, "block max |x|"), h("span", { class: "v" }, num(r.amax))),
      h("div", {}, h("span", { class: "k" }, "QSNR"), h("span", { class: "v", id: "qsnr" }, db(r.qsnr_db))));
    const c = r.compression, f = c.full_block;
    out.ratio.replaceChildren(
      h("div", {}, h("span", { class: "k" }, "compression"),
        h("span", { class: "v", id: "ratio-value" }, `${c.ratio.toFixed(2)} : 1`)),
      note(`${r.elements.length} × ${fmt.bits.bf16} bits = ${c.bf16_bits} bits in BF16 against ${r.elements.length} × ${fmt.bits.code} + ${fmt.bits.scale} = ${c.mxfp4_bits} bits in MXFP4. `,
        `A full block of ${f.n}: ${f.bf16_bits} : ${f.mxfp4_bits} = ${f.ratio.toFixed(2)} : 1.`));
    out.line.replaceChildren();
    mount(out.line, numberLine(r, fmt));
    out.table.replaceChildren(table(["#", "input (BF16)", "x ÷ scale", "code", "E2M1", "decoded", "error"],
      r.elements.map((e) => h("tr", { class: e.clipped ? "clipped" : "" },
        h("td", {}, `x${e.index}`),
        h("td", { title: e.input !== e.given ? `typed ${e.given}, rounded to BF16` : "" }, num(e.input, 6), e.input !== e.given ? " *" : ""),
        h("td", {}, num(e.scaled, 5)),
        h("td", {}, codeBits(e.bits)),
        h("td", {}, num(e.e2m1)),
        h("td", {}, num(e.decoded, 5)),
        h("td", { class: e.error === 0 ? "" : "err" }, e.error === 0 ? "0" : num(e.error, 3), e.clipped ? " (clipped)" : ""))),
      { class: "data" }),
    note("* rounded to the nearest BF16 value before quantizing. Codes are sign | exponent | mantissa."));
  }

  rebuild();
}

// Inputs (top) and their decoded values on the scaled E2M1 grid (bottom).
function numberLine(r, fmt) {
  return (width) => {
    const height = 120, pad = 24, scale = r.scale.value;
    const grid = [...new Set(fmt.codes.map((c) => c.value * scale))];
    const lim = Math.max(fmt.e2m1_max * scale, r.amax) * 1.06;
    const x = (v) => pad + ((v + lim) / (2 * lim)) * (width - 2 * pad);
    const svg = s("svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "plot" });
    svg.append(s("line", { x1: pad, x2: width - pad, y1: 80, y2: 80, class: "axis" }));
    let lastLabel = -Infinity;
    for (const g of grid.sort((a, b) => a - b)) {
      svg.append(s("line", { x1: x(g), x2: x(g), y1: 74, y2: 86, class: "axis" }));
      if (x(g) - lastLabel < 28) continue;  // keep labels apart where the grid is dense
      lastLabel = x(g);
      svg.append(s("text", { x: x(g), y: 102, class: "tick", "text-anchor": "middle" }, num(g, 3)));
    }
    for (const e of r.elements) {
      svg.append(s("line", { x1: x(e.input), y1: 28, x2: x(e.decoded), y2: 78, stroke: e.clipped ? "#d9485f" : "#9aa3b2", "stroke-width": 1.2 }));
      svg.append(s("circle", { cx: x(e.input), cy: 24, r: 4, fill: COLORS[1] }, s("title", {}, `x${e.index} = ${num(e.input)}`)));
      svg.append(s("circle", { cx: x(e.decoded), cy: 80, r: 4.5, fill: COLORS[0] }, s("title", {}, `decoded ${num(e.decoded)}`)));
    }
    svg.append(s("text", { x: pad, y: 12, class: "label" }, "inputs"));
    svg.append(s("text", { x: pad, y: height - 4, class: "label" }, `E2M1 grid × scale ${num(scale)}`));
    return svg;
  };
}
