// Matmul step-through: C = A · Bᵀ with A and B quantized along K, one block pair per step.

import { post, showError } from "../api.js";
import { button, card, h, note, num, pow2, select, slider } from "../dom.js";

export const title = "Matmul";

const SPEED_NAMES = ["", "very slow", "slow", "slow", "medium", "medium", "medium", "fast", "fast", "very fast", "fastest"];

export async function render(root, { fmt }) {
  const state = { m: 2, n: 2, k: 32, block_size: 8, scale_rule: fmt.scale_rules[0], seed: 0, step: 0, speed: 5 };
  let data = null, timer = null;
  const counter = h("span", { id: "step-counter", class: "mono" });
  const playBtn = button("Auto play", () => (timer ? stop() : play()), { id: "play" });
  const stepBtn = button("Step forward", () => advance(), { id: "step", class: "primary" });
  const boxes = { a: h("div", { class: "table-wrap", id: "mat-a" }), b: h("div", { class: "table-wrap", id: "mat-b" }),
    now: h("div", { class: "step-box", id: "step-detail" }), c: h("div", { class: "table-wrap", id: "mat-c" }),
    summary: h("div", { id: "summary" }) };

  root.append(
    h("div", { class: "view-head" }, h("h1", {}, "Matmul step by step"),
      note("C = A · Bᵀ, both quantized along K (the reduction axis) as in OCP MX. Each step adds scale_A · scale_B · Σ aᵢ·bᵢ over one block pair to C[i, j]; ",
        "the E2M1 products are exact, so only the quantization itself loses precision.")),
    card(null, h("div", { class: "controls" }, stepBtn,
      button("Reset", () => { stop(); state.step = 0; draw(); }, { id: "reset" }),
      button("Randomize", () => { state.seed = Math.floor(Math.random() * 1e6); load(); }, { id: "randomize" }),
      playBtn,
      h("span", {}, "Step ", counter),
      (() => {
        const sl = slider("speed", { min: 1, max: 10, value: state.speed, id: "speed", show: (v) => SPEED_NAMES[v] }, (v) => { state.speed = v; if (timer) { stop(); play(); } });
        return sl;
      })(),
      select("block size", [4, 8, 16], state.block_size, (v) => { state.block_size = Number(v); load(); }, { id: "mm-block" }),
      select("scale rule", fmt.scale_rules, state.scale_rule, (v) => { state.scale_rule = v; load(); }, { id: "mm-rule" }))),
    card("A (M × K), dequantized values; scales per block below each row", boxes.a),
    card("B (N × K)", boxes.b),
    h("div", { class: "grid2" }, card("This step", boxes.now), card("C = A · Bᵀ (accumulators)", boxes.c, boxes.summary)));

  async function load() {
    stop();
    try {
      data = await post("/api/matmul", { m: state.m, n: state.n, k: state.k, block_size: state.block_size, scale_rule: state.scale_rule, seed: state.seed });
      showError(null);
      state.step = 0;
      draw();
    } catch (err) { showError(err); }
  }

  function advance() {
    if (!data) return;
    if (state.step < data.steps.length) state.step += 1;
    if (state.step >= data.steps.length) stop();
    draw();
  }

  function play() {
    if (!data) return;
    if (state.step >= data.steps.length) state.step = 0;
    playBtn.textContent = "Pause";
    timer = setInterval(advance, 1150 - state.speed * 105);
  }

  function stop() {
    clearInterval(timer);
    timer = null;
    playBtn.textContent = "Auto play";
  }

  function draw() {
    const steps = data.steps, cur = state.step > 0 ? steps[state.step - 1] : null;
    counter.textContent = `${state.step} / ${steps.length}`;
    stepBtn.disabled = state.step >= steps.length;
    const maxAbs = Math.max(...data.a_decoded.flat().map(Math.abs), ...data.b_decoded.flat().map(Math.abs), 1e-9);
    boxes.a.replaceChildren(matrix("A", data.a, data.a_decoded, data.a_codes, data.a_scales, cur && cur.i, cur, maxAbs));
    boxes.b.replaceChildren(matrix("B", data.b, data.b_decoded, data.b_codes, data.b_scales, cur && cur.j, cur, maxAbs));
    boxes.now.replaceChildren(...stepDetail(cur, data));
    const acc = Array.from({ length: data.m }, () => Array(data.n).fill(null));
    for (const st of steps.slice(0, state.step)) acc[st.i][st.j] = st;
    boxes.c.replaceChildren(h("table", { class: "mat cmat" },
      h("thead", {}, h("tr", {}, h("th", {}, ""), acc[0].map((_, j) => h("th", {}, `· B${j}`)))),
      h("tbody", {}, acc.map((row, i) => h("tr", {}, h("th", {}, `C${i}`), row.map((st, j) => h("td", {
        class: cur && cur.i === i && cur.j === j ? "cur" : "", id: `c-${i}-${j}`,
      }, st ? num(st.acc, 5) : "·", st && st.last ? h("div", { class: "muted" }, `float ${num(st.c_float, 5)}`) : "")))))));
    const done = state.step === steps.length;
    boxes.summary.replaceChildren(done ? h("div", { id: "final" },
      h("p", {}, h("strong", {}, "Done. "), `mxfp4.matmul gives the same C as the steps: ${data.steps_match_library ? "yes" : "NO"}.`),
      h("p", {}, `Against the float product: max |error| ${num(data.max_abs_error, 3)}, relative error ${(100 * data.relative_error).toFixed(2)}%.`))
      : note("Step through all block pairs to compare with the float product."));
  }

  await load();
  return () => stop();
}

function matrix(name, raw, dec, codes, scales, activeRow, cur, maxAbs) {
  const bs = dec[0].length / scales[0].length;
  const inBlock = (i, k) => cur && i === activeRow && k >= cur.k0 && k < cur.k1;
  return h("table", { class: "mat" }, h("tbody", {}, dec.map((row, i) => [
    h("tr", {}, h("th", {}, `${name}${i}`), row.map((v, k) => {
      const t = Math.min(1, Math.abs(v) / maxAbs);
      return h("td", {
        class: [k % bs === 0 ? "blk-start" : "", inBlock(i, k) ? "on" : ""].join(" "),
        style: { background: v === 0 ? "#f1f3f6" : `hsla(${v > 0 ? 217 : 352}, 70%, 55%, ${0.12 + 0.6 * t})` },
        title: `${name}[${i}, ${k}] = ${num(raw[i][k], 5)} → code ${codes[i][k].toString(2).padStart(4, "0")} → ${num(v, 4)}`,
      }, num(v, 2));
    })),
    h("tr", {}, h("th", {}, ""), scales[i].map((sc, b) => h("td", {
      colspan: bs, class: cur && i === activeRow && b === cur.block ? "on" : "",
      style: { background: "#fafbfc", fontSize: "11px" },
    }, `scale ${pow2(sc.exponent)}`))),
  ])));
}

function stepDetail(cur, data) {
  if (!cur) return [note(`${data.steps.length} steps: ${data.m} × ${data.n} outputs × ${data.k / data.block_size} blocks along K. Press “Step forward”.`)];
  const sa = cur.scale_a, sb = cur.scale_b;
  return [
    h("p", { id: "step-pair" }, h("strong", {}, `C[${cur.i}, ${cur.j}], block ${cur.block}`), ` — A${cur.i}[${cur.k0}:${cur.k1}] and B${cur.j}[${cur.k0}:${cur.k1}]`),
    h("div", { class: "eq" }, `scale_A = ${pow2(sa.exponent)} = ${num(sa.value)} (byte ${sa.byte})`),
    h("div", { class: "eq" }, `scale_B = ${pow2(sb.exponent)} = ${num(sb.value)} (byte ${sb.byte})`),
    h("div", { class: "eq" }, `Σ aᵢ·bᵢ over the E2M1 values = ${num(cur.dot_e2m1, 6)}`),
    h("div", { class: "eq", id: "partial" }, `partial = ${num(sa.value)} × ${num(sb.value)} × ${num(cur.dot_e2m1, 6)} = ${num(cur.partial, 6)}`),
    h("div", { class: "eq", id: "acc" }, `accumulator C[${cur.i}, ${cur.j}] = ${num(cur.acc, 6)}`),
    cur.last ? h("p", {}, `C[${cur.i}, ${cur.j}] complete: MXFP4 ${num(cur.c_mx, 6)} vs float ${num(cur.c_float, 6)} (error ${num(cur.c_mx - cur.c_float, 3)}).`) : "",
  ];
}
