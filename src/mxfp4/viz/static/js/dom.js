// Small DOM helpers shared by the views: element builders, number formatting, form controls.

const SVG_NS = "http://www.w3.org/2000/svg";

function build(el, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else if (k === "style" && typeof v === "object") Object.assign(el.style, v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

// Numbers as people read them: integers keep one decimal ("1.0"), others up to `digits` significant.
export function num(x, digits = 4) {
  if (x === null || x === undefined) return "—";
  if (typeof x !== "number" || !Number.isFinite(x)) return String(x);
  if (Object.is(x, -0)) return "-0.0";
  if (Number.isInteger(x) && Math.abs(x) < 1e7) return x.toFixed(1);
  const a = Math.abs(x);
  if (a !== 0 && (a < 1e-3 || a >= 1e7)) return x.toExponential(Math.max(1, digits - 2));
  return String(Number(x.toPrecision(digits)));
}

export function db(x) {
  return x === null || x === undefined ? "exact" : `${x.toFixed(2)} dB`;
}

export function pct(x, digits = 2) {
  return `${(100 * x).toFixed(digits)}%`;
}

export function bytes(b) {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (b >= 1000 && i < units.length - 1) { b /= 1000; i++; }
  return `${Number(b.toFixed(b >= 100 || i === 0 ? 0 : 1))} ${units[i]}`;
}

export function count(n) {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} M`;
  return whole(n);
}

// Whole numbers with thousands separators: counts and limits (1,048,576, never 1.04858e+06).
export function whole(n) {
  return n === null || n === undefined ? "—" : n.toLocaleString("en-US");
}

export function pow2(e) {
  return e === null ? "NaN" : `2^${e}`;
}

// A 4-bit code as coloured sign | exponent | mantissa spans.
export function codeBits(bits, attrs = {}) {
  return h("span", { class: "bits", title: "sign | exponent | mantissa", ...attrs },
    h("span", { class: "b-sign" }, bits[0]),
    h("span", { class: "b-exp" }, bits.slice(1, 3)),
    h("span", { class: "b-man" }, bits[3]));
}

export function card(title, ...children) {
  return h("section", { class: "card" }, title ? h("h2", {}, title) : null, ...children);
}

export function note(...children) {
  return h("p", { class: "muted" }, ...children);
}

export function emptyState(title, ...lines) {
  return h("div", { class: "empty" }, h("strong", {}, title), ...lines.map((l) => h("p", {}, l)));
}

export function select(label, options, value, onchange, attrs = {}) {
  const el = h("select", { ...attrs, onchange: (e) => onchange(e.target.value) },
    options.map((o) => {
      const [v, text] = Array.isArray(o) ? o : [o, o];
      return h("option", { value: v, selected: String(v) === String(value) }, text);
    }));
  return h("label", { class: "field" }, h("span", {}, label), el);
}

// A range input with its value shown; `show` formats the value, oninput fires while dragging.
export function slider(label, { min, max, step = 1, value, show = String, id }, oninput) {
  const out = h("output", {}, show(Number(value)));
  const input = h("input", {
    type: "range", min, max, step, value, id,
    oninput: (e) => { out.textContent = show(Number(e.target.value)); oninput(Number(e.target.value)); },
  });
  return h("label", { class: "field slider" }, h("span", {}, label, " ", out), input);
}

export function button(text, onclick, attrs = {}) {
  return h("button", { type: "button", ...attrs, onclick }, text);
}

export function debounce(fn, ms = 120) {
  let t;
  return (...args) => { clearTimeout(t); t = setTimeout(() => fn(...args), ms); };
}

// A table in a box that scrolls sideways when the table is wider; a hint under it says so, because
// overlay scrollbars (phones, macOS) stay invisible until one scrolls and the table looks cut off.
export function table(columns, rows, attrs = {}) {
  const el = h("table", attrs,
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", {}, c)))),
    h("tbody", {}, rows.map((r) => (r instanceof Node ? r : h("tr", {}, r.map((c) => h("td", {}, c)))))));
  const wrap = h("div", { class: "table-wrap" }, el);
  const hint = h("p", { class: "scroll-hint", hidden: true }, "Scroll sideways for more columns →");
  const check = () => { hint.hidden = wrap.scrollWidth <= wrap.clientWidth + 1; };
  if (window.ResizeObserver) { const ro = new ResizeObserver(check); ro.observe(wrap); ro.observe(el); }
  return h("div", { class: "table-box" }, wrap, hint);
}
