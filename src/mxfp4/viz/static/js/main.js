// The page shell: routes /block, /values, ... to view modules, keeps the nav bar in step.
// A view module exports title and render(root, ctx); render may return a cleanup function.

import { format, showError } from "./api.js";

const VIEWS = ["block", "values", "rules", "matmul", "moe", "perf", "training", "model"];
const root = document.getElementById("view");
let cleanup = null;
let generation = 0;

function viewName() {
  const name = location.pathname.replace(/^\/+|\/+$/g, "") || "block";
  return VIEWS.includes(name) ? name : "block";
}

async function route() {
  const name = viewName();
  const mine = ++generation;
  if (cleanup) { try { cleanup(); } catch (e) { console.warn(e); } cleanup = null; }
  showError(null);
  for (const a of document.querySelectorAll("#nav a")) {
    a.classList.toggle("active", a.dataset.view === name);
    if (a.dataset.view === name) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  root.replaceChildren();
  root.dataset.view = name;
  root.dataset.ready = "";
  try {
    const [mod, fmt] = await Promise.all([import(`./views/${name}.js`), format()]);
    if (mine !== generation) return;
    document.title = `${mod.title} · mxfp4 viz`;
    const done = await mod.render(root, { fmt, params: new URLSearchParams(location.search), navigate });
    if (mine !== generation) { if (typeof done === "function") done(); return; }
    cleanup = typeof done === "function" ? done : null;
    root.dataset.ready = "1";
  } catch (err) {
    showError(err);
  }
}

export function navigate(path) {
  history.pushState(null, "", path);
  route();
}

document.addEventListener("click", (e) => {
  const a = e.target.closest("a[data-view]");
  if (!a || e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
  e.preventDefault();
  navigate(a.getAttribute("href"));
});
window.addEventListener("popstate", route);
window.addEventListener("unhandledrejection", (e) => showError(e.reason));
route();
