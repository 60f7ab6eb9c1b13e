// Training: loss curves of training runs, from the results recorded in docs/benchmarks
// (training-*.json) and from the run folders given with `mxfp4 viz --runs DIR`.
// The server lists the runs with their final losses (viz/training.py); a run's curve is fetched
// when its box is ticked.

import { get, latest, showError } from "../api.js";
import { COLORS, legend, lines, mount, niceTicks } from "../chart.js";
import { card, emptyState, h, note, select, table, whole } from "../dom.js";

export const title = "Training";

const MAX_DEFAULT = 8;  // runs ticked when the page opens
const RANGES = [["1", "all steps"], ["0.5", "last half"], ["0.25", "last quarter"]];

export async function render(root) {
  const list = await get("/api/training");
  const runs = list.runs;
  root.append(h("div", { class: "view-head" }, h("h1", {}, title),
    note("Loss curves of training runs: the results recorded in docs/benchmarks, and the run folders given with ",
      h("code", {}, "mxfp4 viz --runs DIR"), ". Lower loss is better; validation loss is measured on text the model never trained on.")));
  if (!runs.length) {
    root.append(card("Runs", emptyState("No training runs to show.", list.how_to), problemsNote(list)));
    return;
  }
  const color = new Map(runs.map((r, i) => [r.id, COLORS[i % COLORS.length]]));
  const drawable = runs.filter((r) => !r.problem);
  const folders = drawable.filter((r) => r.source === "folder");
  const first = folders.length ? folders : drawable.filter((r) => r.group === drawable[0]?.group);
  const state = { picked: new Set(first.slice(0, MAX_DEFAULT).map((r) => r.id)), x: "step", log: false, smooth: true, range: "1" };
  const curves = new Map();  // id -> promise of the curve
  const chartBox = h("div", { id: "training-chart" });
  const controls = h("div", { class: "controls" });
  const fetchAll = latest((ids) => Promise.all(ids.map((id) => {
    if (!curves.has(id)) curves.set(id, get("/api/training/run", { id }).catch((err) => { curves.delete(id); throw err; }));
    return curves.get(id);
  })));

  const draw = async () => {
    const picked = runs.filter((r) => state.picked.has(r.id));
    let data;
    try {
      data = await fetchAll(picked.map((r) => r.id));
    } catch (err) {
      showError(err);
      return;
    }
    if (data === undefined) return;  // a newer choice is on its way
    showError(null);
    const tokensOk = picked.length > 0 && picked.every((r) => r.tokens_per_step);
    if (!tokensOk) state.x = "step";
    controls.replaceChildren(
      select("x axis", [["step", "training step"], ...(tokensOk ? [["tokens", "tokens seen"]] : [])], state.x,
        (v) => { state.x = v; draw(); }, { id: "training-x" }),
      select("show", RANGES, state.range, (v) => { state.range = v; draw(); }, { id: "training-range" }),
      toggle("log scale", state.log, (v) => { state.log = v; draw(); }, "training-log"),
      toggle("smooth the training loss", state.smooth, (v) => { state.smooth = v; draw(); }, "training-smooth"));
    chartBox.replaceChildren();
    if (!picked.length) {
      chartBox.append(note("Tick one or more runs in the table below to draw their loss."));
      return;
    }
    chartBox.append(
      legend(picked.map((r) => [r.label, color.get(r.id)])),
      legend([["training loss (line)", "#667085"], ["validation loss (dots)", "#667085", true]]));
    mount(chartBox, chart(picked, data, color, state));
    const averaged = data.filter((c) => c.averaged > 1).map((c, i) => `${picked[i].label}: ${c.averaged}`);
    if (averaged.length) chartBox.append(note(`Long logs are averaged in buckets of steps to keep the page light (${averaged.join(", ")} steps a point).`));
  };

  const rows = runs.map((r) => {
    const box = h("input", { type: "checkbox", class: "pick", checked: state.picked.has(r.id), disabled: Boolean(r.problem),
      "aria-label": `draw ${r.label}`,
      onchange: (e) => { if (e.target.checked) state.picked.add(r.id); else state.picked.delete(r.id); draw(); } });
    const swatch = h("i", { style: { display: "inline-block", width: "10px", height: "10px", borderRadius: "2px", margin: "0 6px", background: color.get(r.id) } });
    const cells = r.problem
      ? [h("td", { colspan: 5, style: { whiteSpace: "normal", minWidth: "18em" } }, `cannot be drawn: ${r.problem}`)]
      : [r.tokens === null ? "—" : whole(r.tokens), whole(r.steps), loss(r.final_train), loss(r.final_val),
        r.diverged_at ? `diverged at step ${whole(r.diverged_at)}` : r.in_progress ? "under way (last checkpoint)" : ""]
        .map((c, i) => h("td", { class: i < 4 ? "num" : null }, c));
    return h("tr", { "data-id": r.id, class: r.problem ? "bad" : null, title: r.where },
      h("td", {}, h("label", { class: "pick-run" }, box, swatch, r.label)),
      h("td", {}, r.source === "recorded" ? fileTitle(list, r.group) : `folder ${r.group.split(/[\\/]/).filter(Boolean).at(-1) || r.group}`),
      h("td", {}, r.what || "—"), ...cells);
  });
  root.append(
    card("Loss curves", controls, chartBox),
    card("Runs and final losses",
      table(["run", "from", "how trained", "tokens", "steps", "final training loss", "final validation loss", ""], rows,
        { class: "data bench-table", id: "training-runs" }),
      note("Final training loss: the mean of the last 10 steps (all of them in a shorter run). Final validation loss: the last evaluation. Hover a row to see the file or folder it was read from."),
      ...list.files.filter((f) => f.notes).map((f) => note(h("strong", {}, `${f.title}: `), f.notes)),
      problemsNote(list)));
  await draw();
}

function fileTitle(list, name) {
  const f = list.files.find((x) => x.name === name);
  return f ? `${f.title} (${name})` : name;
}

function loss(v) {
  return v === null || v === undefined ? "—" : v.toFixed(4);
}

function problemsNote(list) {
  if (!list.problems.length) return "";
  return h("p", { class: "muted", id: "training-problems" },
    `Not read: ${list.problems.map((p) => `${p.where} (${p.reason})`).join("; ")}.`);
}

function toggle(label, value, onchange, id) {
  return h("label", { class: "field inline" },
    h("input", { type: "checkbox", id, checked: value, onchange: (e) => onchange(e.target.checked) }), h("span", {}, label));
}

// Exponential moving average with bias correction, as mxfp4.train.plot draws long runs (there,
// too, only the smoothed line is drawn: the raw one would hide the gaps between runs).
function smooth(values, weight) {
  let avg = 0, n = 0;
  return values.map((v) => {
    if (v === null) return null;
    n += 1;
    avg = weight * avg + (1 - weight) * v;
    return avg / (1 - weight ** n);
  });
}

// Loss values at 1-2-3-5 steps that fall in [lo, hi], for the ticks of a log axis.
function logTicks(lo, hi) {
  const out = [];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
    for (const m of [1, 1.5, 2, 3, 4, 5, 6, 8]) {
      const v = m * 10 ** e;
      if (v >= lo && v <= hi) out.push(v);
    }
  }
  const step = Math.ceil(out.length / 7);
  return out.filter((_, i) => i % step === 0);
}

function chart(picked, data, color, state) {
  const perStep = (r) => (state.x === "tokens" ? r.tokens_per_step : 1);
  const maxX = Math.max(...picked.map((r, i) => Math.max(0, ...data[i].train.step, ...data[i].val.step) * perStep(r)));
  const fromX = maxX * (1 - Number(state.range));
  const fy = (v) => (v === null || (state.log && v <= 0) ? null : state.log ? Math.log10(v) : v);
  const series = [], points = [], vlines = [];
  picked.forEach((r, i) => {
    const c = data[i], col = color.get(r.id), k = perStep(r);
    const keep = (steps) => steps.map((s, j) => [s * k, j]).filter(([x]) => x >= fromX);
    const raw = c.train.loss;
    const shown = state.smooth && raw.length > 50 ? smooth(raw, 0.9) : raw;
    const t = keep(c.train.step);
    series.push({ x: t.map(([x]) => x), y: t.map(([, j]) => fy(shown[j])), color: col, width: 1.6 });
    const v = keep(c.val.step).filter(([, j]) => c.val.loss[j] !== null);
    series.push({ x: v.map(([x]) => x), y: v.map(([, j]) => fy(c.val.loss[j])), color: col, width: 1.2, dash: "5 3" });
    for (const [x, j] of v) {
      points.push({ x, y: fy(c.val.loss[j]), color: col, r: 3.5,
        label: `${r.label}: validation loss ${c.val.loss[j].toFixed(4)} at step ${whole(c.val.step[j])}` });
    }
    if (r.diverged_at && r.diverged_at * k >= fromX) vlines.push({ x: r.diverged_at * k });
  });
  const ys = series.flatMap((se) => se.y).concat(points.map((p) => p.y)).filter((y) => y !== null && Number.isFinite(y));
  const xs = series.flatMap((se) => se.x);
  if (!ys.length || !xs.length) return () => note("No loss values in this range.");
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  const pad = (y1 - y0) * 0.06 || 0.05;
  [y0, y1] = [y0 - pad, y1 + pad];
  const options = { series, points: points.filter((p) => p.y !== null), vlines, height: 340,
    xLabel: state.x === "tokens" ? "tokens seen" : "training step",
    yLabel: state.log ? "loss (log scale)" : "loss (nats per token)",
    xDomain: [Math.min(...xs), Math.max(...xs)], yDomain: [y0, y1], yTicks: niceTicks(y0, y1, 6) };
  if (state.log) {
    options.yTicks = logTicks(10 ** y0, 10 ** y1).map(Math.log10);
    options.yFormat = (v) => String(Number((10 ** v).toPrecision(3)));
  }
  return lines(options);
}
