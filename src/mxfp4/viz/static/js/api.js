// Talking to the server. Errors carry the server's message; showError puts it in the banner.

export class ApiError extends Error {
  constructor(message, status) { super(message); this.status = status; }
}

async function handle(resp) {
  let data;
  try { data = await resp.json(); } catch { data = null; }
  if (!resp.ok) throw new ApiError((data && data.error) || `HTTP ${resp.status}`, resp.status);
  return data;
}

export async function get(path, params = {}) {
  const q = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== undefined && v !== null));
  return handle(await fetch(q.size || [...q].length ? `${path}?${q}` : path));
}

export async function post(path, body) {
  return handle(await fetch(path, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  }));
}

// The value table, constants and option names, fetched once per page load.
let formatPromise = null;
export function format() {
  formatPromise = formatPromise || get("/api/format");
  return formatPromise;
}

export function showError(err) {
  const el = document.getElementById("error");
  if (!err) { el.hidden = true; el.textContent = ""; return; }
  el.textContent = err.message || String(err);
  el.hidden = false;
}

// Wrap an async fetcher so that only the newest call's result comes back; older ones give undefined.
// Typing or dragging fires requests faster than they return, and stale answers must not win.
export function latest(fetcher) {
  let seq = 0;
  return async (...args) => {
    const mine = ++seq;
    const result = await fetcher(...args);
    return mine === seq ? result : undefined;
  };
}
