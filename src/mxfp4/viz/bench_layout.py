"""How the Performance view draws one benchmark record, and plain words for its columns.

Records (mxfp4.bench.record) have bare column names: `op`, `shape`, `M`, `variant`, `us`,
`cublas_us`, `config`. Here each column gets a role:
  operation  what was run (op, shape, M, T, ...): the bars are grouped by it; while there are
             more than MAX_GROUPS groups, its leading columns become facets (a select each)
  series     what tells implementations apart (variant, backend, method, ...): one colour each
  metric     a measurement; metrics in the same unit form one quantity (`us`, `cublas_us`,
             `floor_us` -> "time (µs)"), drawn together, bounds (floor, target) as marks. The
             bare one (`us`) or a lone one is each row's own measurement, a bar per row coloured
             by its series; a named one (`cublas_us`) is a reference, one bar per operation
  detail     long text such as tile configurations: tooltips and detail rows, not labels
  info       any other column: tooltips and the table
"""

from __future__ import annotations

import re

OPERATION = re.compile(r"^(op|operation|suite|case|shape|size|m|n|k|t|e|tokens|batch|path|model|layer)$", re.I)
SERIES = re.compile(r"variant|backend|impl|kernel|library|baseline|method|rule|dtype", re.I)
PARAMETER = re.compile(r"^([a-z]|tokens|batch|block_size|experts|top_k|threads|seed|layers|context|prompt)$", re.I)
DETAIL = re.compile(r"config|command|note|error$", re.I)
MARK = re.compile(r"floor|target|bound|roofline|peak|ideal", re.I)
UNIT = re.compile(r"(?:(.+?)[_ ])?(us|ms|ns|s|GBps|MB|GB)")
TIME_UNITS = {"us": "µs", "ms": "ms", "ns": "ns", "s": "s"}
UNITS = {**TIME_UNITS, "GBps": "GB/s", "MB": "MB", "GB": "GB"}
LONG_TEXT = 24  # characters: a text column with longer values is a detail
MAX_SERIES = 8
MAX_GROUPS = 12

WORDS = {
    "op": "operation", "shape": "shape", "M": "M (rows of x)", "N": "N", "K": "K", "T": "tokens",
    "variant": "variant", "backend": "backend", "method": "method", "scale_rule": "scale rule",
    "dtype": "data type", "path": "path", "config": "configuration", "dispatch": "kernel used",
    "meets": "meets target", "decode": "decode kernel", "rel_err": "relative error",
    "error": "error message", "perplexity": "perplexity", "delta": "perplexity increase",
    "tokens": "tokens", "median_ms": "median time (ms)", "M_elements_per_s": "million elements per second",
    "TFLOPs": "TFLOP/s", "weight_GBps": "weight bandwidth (GB/s)",
    "floor_frac": "fraction of speed of light (floor ÷ time)",
    "vs_cublas": "time ÷ cuBLAS time", "linear_vs_cublas": "linear time ÷ cuBLAS time",
    "context": "tokens in the cache", "prompt": "prompt tokens", "tokens_per_s": "tokens per second",
    "wall_tokens_per_s": "tokens per second (wall clock, host included)",
    "speedup": "speedup over transformers", "floor_GB": "bytes read per step at the floor (GB)",
}
NAMES = {"cublas": "cuBLAS", "floor": "speed-of-light floor", "target": "target", "bf16_torch": "bf16 torch"}
LOWER = re.compile(r"(^|_)(us|ms|ns|s)$| s$|err|^vs_|_vs_|perplexity|delta", re.I)
HIGHER = re.compile(r"per_s|flops|gbps|frac|speedup|throughput", re.I)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _distinct(rows, c) -> list:
    return list(dict.fromkeys(str(r.get(c, "")) for r in rows))


def _unit(column: str):
    """(name or None, unit) of a column such as `cublas_us`, `us` or `weights MB`; else None."""
    m = UNIT.fullmatch(column)
    if m and not (m.group(1) or "").endswith("per"):  # M_elements_per_s is a rate, not seconds
        return m.group(1), m.group(2)
    return None


def words(column: str) -> str:
    """A column name in plain words: `cublas_us` -> "cuBLAS (µs)", `weights MB` -> "weights (MB)"."""
    if column in WORDS:
        return WORDS[column]
    if _unit(column):
        name, unit = _unit(column)
        if name is None:
            return f"time ({UNITS[unit]})" if unit in TIME_UNITS else UNITS[unit]
        return f"{NAMES.get(name, name.replace('_', ' '))} ({UNITS[unit]})"
    if column.startswith("err_"):
        return f"error ({column[4:].replace('_', ' ')})"
    return column.replace("_", " ")


def _quantity(column: str) -> tuple[str, str, str]:
    """(key, words, member name) of a metric: columns in one time unit (or err_*) share a key."""
    if _unit(column) and _unit(column)[1] in TIME_UNITS:
        name, unit = _unit(column)
        return f"time_{unit}", f"time ({TIME_UNITS[unit]})", NAMES.get(name, (name or "mxfp4").replace("_", " "))
    if column.startswith("err_"):
        return "err", "error", column[4:].replace("_", " ")
    return column, words(column), ""


def _by(rows, keys, values) -> list:
    """For each distinct value of the `keys` columns, the set of distinct `values` tuples."""
    seen = {}
    for r in rows:
        seen.setdefault(tuple(str(r.get(c)) for c in keys), set()).add(tuple(str(r.get(c)) for c in values))
    return list(seen.values())


def layout(columns: list, rows: list) -> dict:
    """Roles of the columns (see the module docstring), the quantities and the words to show."""
    varying = [c for c in columns if len(_distinct(rows, c)) > 1]
    metrics = [c for c in varying if not PARAMETER.match(c) and any(_number(r.get(c)) for r in rows)
               and all(_number(r.get(c)) or r.get(c) in ("", None) for r in rows)]
    text = [c for c in varying if c not in metrics]
    details = [c for c in text if DETAIL.search(c) or max(len(str(r.get(c, ""))) for r in rows) > LONG_TEXT]
    labels = [c for c in text if c not in details]
    operation = [c for c in labels if OPERATION.match(c)]
    series = next((c for c in labels if c not in operation and SERIES.search(c)
                   and len(_distinct(rows, c)) <= MAX_SERIES), None)
    if not operation and (series or labels):
        operation, series = [series or labels[0]], None
    facets = []
    while len(operation) - len(facets) > 1 and len(_distinct(rows, operation[len(facets)])) <= MAX_SERIES \
            and max(map(len, _by(rows, facets, operation[len(facets):]))) > MAX_GROUPS:
        facets.append(operation[len(facets)])
    quantities = {}
    for c in metrics:
        key, said, name = _quantity(c)
        better = "higher" if HIGHER.search(c) else "lower" if LOWER.search(c) else None
        q = quantities.setdefault(key, {"key": key, "words": said, "members": [], "better": better})
        q["members"].append({"column": c, "name": name or said, "mark": bool(MARK.search(c)), "own": c in UNITS})
    for q in quantities.values():
        if len(q["members"]) == 1:  # alone, a metric is the row's own measurement, and no mark
            q["members"][0].update(own=True, mark=False)
    preferred = next((c for c in metrics if re.fullmatch(r"us|ms|median_ms|time|latency", c, re.I)), None) \
        or next((c for c in metrics if HIGHER.search(c)), None) or (metrics[0] if metrics else None)
    return {"operation": operation, "facets": facets, "series": series, "details": details,
            "info": [c for c in labels if c not in operation and c != series],
            "quantities": list(quantities.values()),
            "default": _quantity(preferred)[0] if preferred else None,
            "words": {c: words(c) for c in columns}}
