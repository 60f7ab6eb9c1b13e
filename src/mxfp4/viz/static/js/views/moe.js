// MoE: an animated token flow through a tiny MoE layer with MXFP4 experts, and a memory calculator.

import { get, latest, post, showError } from "../api.js";
import { COLORS, bars, mount } from "../chart.js";
import { button, bytes, card, count, debounce, h, note, num, s, select, slider, table } from "../dom.js";

export const title = "MoE";

const STAGES = ["token enters", "router logits (BF16)", "top-k choice", "experts run (MXFP4 weights)", "weighted combine", "output"];

export async function render(root) {
  const st = { tokens: 4, experts: 8, top_k: 2, seed: 0, token: 0, stage: -1, speed: 5, highlight: true, done: false };
  let data = null, timer = null;
  const diagram = h("div", { id: "moe-diagram" });
  const status = h("p", { id: "moe-stage", class: "mono" });
  const logitsBox = h("div", { id: "moe-logits" });
  const routing = h("div", { id: "moe-routing" });
  const playBtn = button("Animate token flow", () => (timer ? stop() : play()), { id: "moe-play", class: "primary" });
  const mem = { out: h("div", { id: "mem-result" }), chart: h("div", { id: "mem-chart" }), presets: h("div", { class: "controls", id: "mem-presets" }) };
  const memState = { experts: 128, expert_params_m: 100, other_params_m: 0 };

  root.append(
    h("div", { class: "view-head" }, h("h1", {}, "Mixture of Experts"),
      note("A tiny GPT-OSS-style layer computed on the server: the router stays in BF16-class precision, each token picks its top-k experts, ",
        "softmax over their logits gives the weights, and the experts' SwiGLU weights are MXFP4 (mxfp4.linear). Green marks what is quantized.")),
    card("Token flow",
      h("div", { class: "controls" }, playBtn,
        button("Step", () => advance(), { id: "moe-step" }),
        button("Highlight quantization", () => { st.highlight = !st.highlight; draw(); }, { id: "moe-highlight" }),
        button("New tokens", () => { st.seed += 1; load(); }, { id: "moe-new" }),
        select("experts", [4, 8, 16], st.experts, (v) => { st.experts = Number(v); st.top_k = Math.min(st.top_k, st.experts); load(); }, { id: "moe-experts" }),
        select("top-k", [1, 2, 4], st.top_k, (v) => { st.top_k = Number(v); load(); }, { id: "moe-topk" }),
        slider("speed", { min: 1, max: 10, value: st.speed, id: "moe-speed" }, (v) => { st.speed = v; if (timer) { stop(); play(); } })),
      status, diagram,
      h("div", { class: "grid2" }, h("div", {}, h("h3", {}, "Router logits of the current token"), logitsBox), h("div", {}, h("h3", {}, "Routing"), routing))),
    card("Memory calculator: experts in BF16 vs MXFP4",
      mem.presets,
      h("div", { class: "controls" },
        slider("number of experts", { min: 8, max: 512, value: memState.experts, id: "num-experts" }, (v) => { memState.experts = v; calc(); }),
        slider("expert size (M params)", { min: 10, max: 1000, step: 0.1, value: memState.expert_params_m, id: "expert-size", show: (v) => num(v, 4) }, (v) => { memState.expert_params_m = v; calc(); }),
        h("label", { class: "field" }, h("span", {}, "other params, BF16 (M)"),
          h("input", { type: "number", min: 0, step: "any", value: 0, id: "other-params", class: "medium",
            oninput: (e) => { memState.other_params_m = Math.max(0, Number(e.target.value) || 0); calc(); } }))),
      mem.out, mem.chart));

  async function load() {
    stop();
    try {
      data = await post("/api/moe", { tokens: st.tokens, experts: st.experts, top_k: st.top_k, seed: st.seed });
      showError(null);
      st.token = 0; st.stage = -1; st.done = false;
      draw();
    } catch (err) { showError(err); }
  }

  function advance() {
    if (!data) return;
    if (st.done) { st.done = false; st.token = 0; st.stage = -1; }
    st.stage += 1;
    if (st.stage >= STAGES.length) { st.stage = 0; st.token += 1; }
    if (st.token >= data.tokens) { st.token = data.tokens - 1; st.stage = STAGES.length - 1; st.done = true; stop(); }
    draw();
  }

  function play() {
    if (st.done) { st.done = false; st.token = 0; st.stage = -1; }
    playBtn.textContent = "Pause";
    timer = setInterval(advance, 1200 - st.speed * 110);
  }

  function stop() { clearInterval(timer); timer = null; playBtn.textContent = "Animate token flow"; }

  function draw() {
    const t = data.per_token[st.token];
    const chosen = t.chosen.map((c) => c.expert);
    status.textContent = st.done
      ? `done: ${data.tokens} tokens routed; mean output error vs float ${(100 * mean(data.per_token.map((p) => p.relative_error))).toFixed(1)}%`
      : st.stage < 0 ? `${data.tokens} tokens ready. Press “Animate token flow”.`
        : `token ${st.token + 1} / ${data.tokens} · ${STAGES[st.stage]}` + (st.stage >= 2 ? ` · experts ${chosen.join(", ")} · weights ${t.chosen.map((c) => c.weight.toFixed(2)).join(", ")}` : "")
          + (st.stage === 5 ? ` · error vs float ${(100 * t.relative_error).toFixed(1)}%` : "");
    diagram.replaceChildren();
    mount(diagram, flow(data, st));
    logitsBox.replaceChildren();
    if (st.stage >= 1 || st.done) {
      const lo = Math.min(...t.logits), hi = Math.max(...t.logits);
      mount(logitsBox, bars({ labels: t.logits.map((_, e) => `E${e}`), series: [{ values: t.logits, color: COLORS[0] }],
        highlight: st.stage >= 2 || st.done ? chosen : [], format: (v) => num(v, 3), yLabel: "logit", height: 180,
        valueLabels: false, yMin: lo - 0.15 * (hi - lo || 1) }));
    } else logitsBox.append(note("Shown once the router has run."));
    const shown = data.per_token.filter((_, i) => i < st.token || (i === st.token && (st.stage >= 2 || st.done)));
    routing.replaceChildren(table(["token", "experts (weight)", "error vs float"],
      shown.map((p) => [`T${p.token}`, p.chosen.map((c) => `E${c.expert} (${c.weight.toFixed(2)})`).join(", "), `${(100 * p.relative_error).toFixed(1)}%`]), { class: "data" }),
    note(`Expert weights: ${bytes(data.expert_bytes.bf16)} in BF16, ${bytes(data.expert_bytes.mxfp4)} in MXFP4.`));
  }

  const fetchMemory = latest(() => post("/api/memory", memState));
  async function calc() {
    try {
      const r = await fetchMemory();
      if (!r) return;
      showError(null);
      const fits = (ok) => h("span", { class: `badge ${ok ? "yes" : "no"}` }, ok ? "fits" : "does not fit");
      mem.out.replaceChildren(h("div", { class: "stat-row" },
        h("div", { class: "stat" }, h("b", {}, count(r.total_params)), h("span", {}, "parameters")),
        h("div", { class: "stat" }, h("b", { id: "mem-bf16" }, bytes(r.bf16_bytes)), h("span", {}, "BF16 "), fits(r.fits_bf16)),
        h("div", { class: "stat" }, h("b", { id: "mem-mxfp4" }, bytes(r.mxfp4_bytes)), h("span", {}, "MXFP4 "), fits(r.fits_mxfp4)),
        h("div", { class: "stat" }, h("b", {}, `${r.ratio.toFixed(2)}×`), h("span", {}, "smaller"))),
      note(`Expert weights at ${r.bits_per_mxfp4_element} bits per parameter (4-bit code + 8-bit scale per 32); other parameters stay BF16. `,
        h("span", { id: "mem-fits" }, `Fits on one ${bytes(r.gpu_bytes)} GPU: BF16 ${r.fits_bf16 ? "yes" : "no"}, MXFP4 ${r.fits_mxfp4 ? "yes" : "no"}`), " (weights only)."));
      mem.chart.replaceChildren();
      mount(mem.chart, memoryBars(r));
    } catch (err) { showError(err); }
  }
  const calcSoon = debounce(calc, 60);

  const pre = await get("/api/memory/presets");
  mem.presets.replaceChildren(h("span", { class: "muted" }, "Presets:"), ...pre.presets.map((p) => button(p.name, () => {
    Object.assign(memState, { experts: p.experts, expert_params_m: p.expert_params_m, other_params_m: p.other_params_m });
    root.querySelector("#num-experts").value = p.experts;
    root.querySelector("#expert-size").value = p.expert_params_m;
    root.querySelector("#num-experts").dispatchEvent(new Event("input"));
    root.querySelector("#expert-size").dispatchEvent(new Event("input"));
    root.querySelector("#other-params").value = p.other_params_m;
    calcSoon();
  }, { title: p.note, "data-preset": p.name })));
  await Promise.all([load(), calc()]);
  return () => stop();
}

function mean(xs) { return xs.reduce((a, b) => a + b, 0) / xs.length; }

function memoryBars(r) {
  return (width) => {
    const height = 120, left = 70, right = 20;
    const top = Math.max(r.bf16_bytes, r.gpu_bytes) * 1.1;
    const x = (v) => left + (v / top) * (width - left - right);
    const svg = s("svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "plot" });
    [["BF16", r.bf16_bytes, COLORS[1]], ["MXFP4", r.mxfp4_bytes, COLORS[2]]].forEach(([name, v, c], i) => {
      const y = 14 + i * 42;
      svg.append(s("text", { x: left - 8, y: y + 20, class: "label", "text-anchor": "end" }, name));
      svg.append(s("rect", { x: left, y, width: Math.max(1, x(v) - left), height: 28, fill: c, rx: 3 }));
      const inside = x(v) - left > 90;
      svg.append(s("text", { x: inside ? x(v) - 6 : x(v) + 6, y: y + 19, class: "label", "text-anchor": inside ? "end" : "start", style: { fill: inside ? "#fff" : "#1f2430" } }, bytes(v)));
    });
    svg.append(s("line", { x1: x(r.gpu_bytes), x2: x(r.gpu_bytes), y1: 6, y2: 104, class: "ref" }));
    svg.append(s("text", { x: x(r.gpu_bytes) - 4, y: 116, class: "ref-label", "text-anchor": "end" }, `one ${bytes(r.gpu_bytes)} GPU`));
    return svg;
  };
}

// The token flow diagram: tokens -> router -> experts -> combine -> output.
function flow(data, st) {
  return (width) => {
    const E = data.experts, rowH = Math.max(18, Math.min(34, 300 / E)), height = Math.max(220, E * rowH + 40);
    const svg = s("svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "plot" });
    const col = (f) => Math.round(width * f);
    const t = data.per_token[st.token], chosen = t.chosen.map((c) => c.expert);
    const on = (stage) => st.done || st.stage >= stage;
    const tokY = (i) => 20 + (i + 0.5) * ((height - 40) / data.tokens);
    const expY = (e) => 20 + (e + 0.5) * ((height - 40) / E);
    const mid = height / 2;
    const box = (x, y, w, hgt, label, cls, tag) => {
      svg.append(s("rect", { x: x - w / 2, y: y - hgt / 2, width: w, height: hgt, rx: 5, class: `node ${cls}` }));
      svg.append(s("text", { x, y: y + (tag ? -1 : 4), "text-anchor": "middle", class: "nlabel" }, label));
      if (tag) svg.append(s("text", { x, y: y + hgt / 2 - 3, "text-anchor": "middle", class: "qtag" }, tag));
    };
    const wire = (x1, y1, x2, y2, lit) => svg.append(s("path", { d: `M${x1},${y1}C${(x1 + x2) / 2},${y1} ${(x1 + x2) / 2},${y2} ${x2},${y2}`, class: `flow ${lit ? "on" : ""}` }));
    const xs = { tok: col(0.07), router: col(0.27), exp: col(0.55), comb: col(0.78), out: col(0.93) };
    const narrow = width < 560;
    for (let i = 0; i < data.tokens; i++) wire(xs.tok + 18, tokY(i), xs.router - 40, mid, i === st.token && on(0));
    for (let e = 0; e < E; e++) {
      const picked = chosen.includes(e) && on(2);
      wire(xs.router + 40, mid, xs.exp - 30, expY(e), picked);
      wire(xs.exp + 30, expY(e), xs.comb - 16, mid, picked && on(4));
    }
    wire(xs.comb + 16, mid, xs.out - 20, mid, on(5));
    for (let i = 0; i < data.tokens; i++) box(xs.tok, tokY(i), 36, 24, `T${i}`, i === st.token && on(0) ? "on" : "");
    box(xs.router, mid, narrow ? 62 : 80, 44, "router", on(1) ? "on" : "", narrow ? "" : "BF16");
    for (let e = 0; e < E; e++) {
      const picked = chosen.includes(e) && on(2);
      const cls = `${st.highlight ? "q" : ""} ${picked && on(3) ? "on" : picked ? "on" : ""}`;
      box(xs.exp, expY(e), narrow ? 50 : 60, rowH - 4, `E${e}`, cls, st.highlight && rowH >= 30 ? "MXFP4" : "");
      if (picked) {
        const c = t.chosen.find((x) => x.expert === e);
        svg.append(s("text", { x: xs.exp + (narrow ? 30 : 36), y: expY(e) - 3, class: "nlabel" }, `w ${c.weight.toFixed(2)}`));
      }
    }
    box(xs.comb, mid, 32, 32, "Σ", on(4) ? "on" : "");
    box(xs.out, mid, 36, 28, "y", on(5) ? "on" : "");
    if (st.highlight) svg.append(s("text", { x: xs.exp, y: 12, "text-anchor": "middle", class: "qtag" }, "experts: MXFP4 weights"));
    return svg;
  };
}
