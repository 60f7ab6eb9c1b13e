// Your model: tensors of a safetensors file or folder in --models DIR, their QSNR per scale rule,
// and for one tensor its scales, per-block error map and worst blocks.

import { get, showError } from "../api.js";
import { COLORS, bars, heatmap, mount, ramp } from "../chart.js";
import { button, card, count, db, emptyState, h, note, num, pct, select, table, whole } from "../dom.js";

export const title = "Your model";

const STORED = "mxfp4 (stored)";

export async function render(root, { fmt, params, navigate }) {
  const list = await get("/api/models");
  root.append(h("div", { class: "view-head" }, h("h1", {}, title),
    note(`Tensors of a .safetensors file or Hugging Face model folder, read lazily in slices. QSNR per scale rule is measured on up to ${whole(list.sample_elements)} values per tensor (* marks a sample); click a tensor for the full picture. `,
      "Tensors already stored in MXFP4 (mxfp4 checkpoints, compressed-tensors, MXTensor files, gpt-oss) are decoded as stored.")));
  if (!list.configured) { root.append(card(null, emptyState("No models directory.", list.how_to))); return; }
  if (!list.entries.length) { root.append(card(null, emptyState("No .safetensors files in the models directory.", list.how_to))); return; }

  let stopped = false;
  const state = { path: params.get("path") || list.entries[0].path, selected: params.get("tensor"), rule: fmt.scale_rules[0], filter: "" };
  const tableBox = h("div", { id: "tensor-table" });
  const detail = h("div", { id: "tensor-detail" });
  root.append(
    card(null, h("div", { class: "controls" },
      select("model", list.entries.map((e) => [e.path, `${e.path} (${e.kind === "folder" ? `${e.files} files, ` : ""}${(e.bytes / 1e6).toFixed(1)} MB)`]), state.path,
        (v) => { state.path = v; state.selected = null; loadModel(); }, { id: "model-path" }),
      h("label", { class: "field" }, h("span", {}, "filter"),
        h("input", { type: "text", id: "tensor-filter", placeholder: "name contains…", oninput: (e) => { state.filter = e.target.value; drawTable(); } }))),
    tableBox),
    detail);

  let tensors = [], warnings = [];
  const qsnr = new Map();

  async function loadModel() {
    try {
      const r = await get("/api/model", { path: state.path });
      showError(null);
      tensors = r.tensors;
      warnings = r.warnings;
      qsnr.clear();
      drawTable();
      if (state.selected) openTensor(state.selected);
      else detail.replaceChildren();
      fillQsnr(state.path);
    } catch (err) { showError(err); }
  }

  async function fillQsnr(path) {
    for (const t of tensors.filter((x) => x.kind === "float")) {
      if (stopped || path !== state.path) return;
      try {
        qsnr.set(t.name, await get("/api/model/qsnr", { path, name: t.name }));
      } catch (err) { qsnr.set(t.name, { error: err.message }); }
      if (stopped || path !== state.path) return;
      const row = tableBox.querySelector(`tr[data-name="${CSS.escape(t.name)}"]`);
      if (row) row.replaceWith(tensorRow(t));
    }
  }

  function tensorRow(t) {
    const q = qsnr.get(t.name);
    const cells = fmt.scale_rules.map((r) => h("td", { class: "q" },
      t.kind !== "float" ? "—" : !q ? "…" : q.error ? "error" : `${db(q.qsnr_db[r])}${q.sampled ? "*" : ""}`));
    const opens = t.kind === "float" || t.kind === STORED;
    return h("tr", { "data-name": t.name, class: `${opens ? "clickable" : ""} ${t.name === state.selected ? "selected" : ""}`,
      onclick: opens ? () => openTensor(t.name) : null },
    h("td", { class: "name", title: t.name }, t.name), h("td", {}, `[${t.shape.join(", ")}]`), h("td", {}, t.dtype),
    h("td", {}, count(t.numel)), t.kind === "float" ? cells : h("td", { colspan: fmt.scale_rules.length },
      h("span", { class: `badge ${t.kind === STORED ? "mx" : ""}` }, t.kind),
      t.format ? h("span", { class: "muted" }, ` ${t.format}${t.kind === STORED ? `, logical [${t.logical_shape.join(", ")}]` : ""}`) : "",
      t.recorded_qsnr_db != null ? h("span", { class: "recorded-qsnr" }, ` · QSNR ${db(t.recorded_qsnr_db)} (against the float weight, recorded by mxfp4 quantize)`) : ""));
  }

  function drawTable() {
    const shown = tensors.filter((t) => t.name.includes(state.filter));
    tableBox.replaceChildren(table(["tensor", "shape", "dtype", "elements", ...fmt.scale_rules.map((r) => `QSNR ${r}`)],
      shown.map(tensorRow), { class: "data" }),
    note(`${shown.length} of ${tensors.length} tensors.`),
    ...warnings.map((w) => h("p", { class: "warning" }, w)));
  }

  async function openTensor(name) {
    state.selected = name;
    tableBox.querySelectorAll("tr.selected").forEach((r) => r.classList.remove("selected"));
    tableBox.querySelector(`tr[data-name="${CSS.escape(name)}"]`)?.classList.add("selected");
    detail.replaceChildren(card(name, note("Quantizing the whole tensor…")));
    try {
      const d = await get("/api/model/tensor", { path: state.path, name, rule: state.rule });
      if (stopped || state.selected !== name) return;
      showError(null);
      detail.replaceChildren(tensorDetail(d));
    } catch (err) { showError(err); }
  }

  function blockPicker(d) {
    const row = h("input", { type: "number", min: 0, max: d.rows - 1, value: 0, class: "small", id: "pick-row" });
    const blk = h("input", { type: "number", min: 0, max: d.blocks_per_row - 1, value: 0, class: "small", id: "pick-block" });
    return h("div", { class: "controls" },
      h("label", { class: "field" }, h("span", { id: "pick-row-range" }, `row (0–${whole(d.rows - 1)})`), row),
      h("label", { class: "field" }, h("span", {}, `block (0–${whole(d.blocks_per_row - 1)})`), blk),
      button("Open in block quantizer", () => openBlock(d, Number(row.value), Number(blk.value)), { id: "pick-open" }));
  }

  function storedDetail(d) {
    const scaleBox = h("div", { id: "scale-hist" }), codeBox = h("div", { id: "tensor-codes" });
    const section = card(`${d.name}  (stored MXFP4, logical [${d.shape.join(", ")}])`,
      note("Already MXFP4 in the file: there is no original to measure the error against. Shown: the stored scales and codes, and any block decoded by the library."),
      h("div", { class: "stat-row" }, stat("format", d.format, "stored-format"), stat("blocks", count(d.rows * d.blocks_per_row)),
        stat("rows × blocks", `${whole(d.rows)} × ${whole(d.blocks_per_row)}`), stat("block size", String(d.block_size)),
        stat("blocked axis", String(d.axis)), stat("scale rule", d.scale_rule || "not recorded"), stat("NaN scales", whole(d.nan_blocks))),
      d.note ? note(d.note) : "",
      note(`Row r is one line of ${d.shape[d.axis]} values along axis ${d.axis}; the other axes count the rows.`),
      h("div", { class: "grid2" }, h("div", {}, h("h3", {}, "Block scale exponents"), scaleBox), h("div", {}, h("h3", {}, "Code usage"), codeBox)),
      h("h3", {}, "Decode one block"), blockPicker(d));
    drawHistograms(d, scaleBox, codeBox);
    return section;
  }

  function drawHistograms(d, scaleBox, codeBox) {
    const exps = d.scale_exponents.filter((e) => e.exponent !== null).map((e) => e.exponent);
    const span = exps.length ? Array.from({ length: Math.max(...exps) - Math.min(...exps) + 1 }, (_, i) => Math.min(...exps) + i) : [];
    const blocksAt = (e) => d.scale_exponents.find((x) => x.exponent === e)?.blocks || 0;
    mount(scaleBox, bars({ labels: span.map(String), series: [{ values: span.map(blocksAt), color: COLORS[0] }],
      xLabel: "exponent e (scale 2^e)", yLabel: "blocks", height: 220, valueLabels: false }));
    const order = fmt.codes.map((c) => c.code).sort((a, b) => fmt.codes[a].value - fmt.codes[b].value || b - a);
    const total = d.code_counts.reduce((a, b) => a + b, 0) || 1;
    mount(codeBox, bars({ labels: order.map((c) => (c === 8 ? "−0" : num(fmt.codes[c].value, 2))), series: [{ values: order.map((c) => d.code_counts[c] / total), color: COLORS[2] }],
      format: (v) => pct(v, 1), xLabel: "code value", yLabel: "share", height: 220, valueLabels: false }));
  }

  function tensorDetail(d) {
    if (d.stored) return storedDetail(d);
    const scaleBox = h("div", { id: "scale-hist" }), codeBox = h("div", { id: "tensor-codes" });
    const finite = d.heatmap.qsnr_db.flat().filter((v) => v !== null);
    const lo = finite.length ? Math.min(...finite) : 0, hi = finite.length ? Math.max(...finite) : 1;
    const section = card(`${d.name}  [${d.shape.join(", ")}]`,
      h("div", { class: "controls" }, select("scale rule", fmt.scale_rules, state.rule, (v) => { state.rule = v; openTensor(d.name); }, { id: "tensor-rule" })),
      h("div", { class: "stat-row" },
        stat("QSNR", db(d.qsnr_db), "tensor-qsnr"), stat("clipped", pct(d.clipped_fraction, 3)), stat("MSE", num(d.mse, 3)),
        stat("blocks", count(d.rows * d.blocks_per_row)), stat("rows × blocks", `${whole(d.rows)} × ${whole(d.blocks_per_row)}`)),
      h("div", { class: "grid2" },
        h("div", {}, h("h3", {}, "Block scale exponents"), scaleBox),
        h("div", {}, h("h3", {}, "Code usage"), codeBox)),
      h("div", { class: "grid2" },
        h("div", {}, h("h3", {}, "Per-block QSNR map"),
          note(`Rows down, blocks along the last axis across; a cell is ${num(d.heatmap.row_span, 3)} rows × ${num(d.heatmap.block_span, 3)} blocks.`),
          heatmap(d.heatmap.qsnr_db, { lo, hi, title: "red: low QSNR, green: high" }),
          h("div", { class: "legend" }, h("span", {}, h("i", { style: { background: ramp(0) } }), `${lo.toFixed(1)} dB`),
            h("span", {}, h("i", { style: { background: ramp(0.5) } }), `${((lo + hi) / 2).toFixed(1)} dB`),
            h("span", {}, h("i", { style: { background: ramp(1) } }), `${hi.toFixed(1)} dB`))),
        h("div", {}, h("h3", {}, "Worst blocks"),
          table(["row", "block", "QSNR", "scale", "max |x|", ""], d.worst_blocks.map((w) => [
            String(w.row), String(w.block), db(w.qsnr_db), `2^${w.scale_exponent}`, num(w.amax, 4),
            button("open", () => openBlock(d, w.row, w.block), { class: "open-block", "data-row": w.row, "data-block": w.block })]),
          { class: "data", id: "worst-blocks" }))),
      h("h3", {}, "Open any block"), blockPicker(d));
    drawHistograms(d, scaleBox, codeBox);
    return section;
  }

  // A stored block opens with the scale rule its file records, so that it quantizes back to itself.
  async function openBlock(d, row, block) {
    try {
      const b = await get("/api/model/block", { path: state.path, name: d.name, row, block });
      const rule = d.stored ? d.scale_rule || "floor" : state.rule;
      const q = new URLSearchParams({ values: b.values.map(String).join(","), rule, from: `${d.name} row ${row} block ${block}` });
      navigate(`/block?${q}`);
    } catch (err) { showError(err); }
  }

  function stat(label, value, id) { return h("div", { class: "stat" }, h("b", { id }, value), h("span", {}, label)); }

  await loadModel();
  return () => { stopped = true; };
}
