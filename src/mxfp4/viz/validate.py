"""Reading and checking client input: every bad value becomes an ApiError with a clear message.

The API never trusts a number, a name or a length it did not check here first.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal

import torch

MAX_BODY_BYTES = 1 << 20  # 1 MiB per request body
BF16_MAX = torch.finfo(torch.bfloat16).max


class ApiError(Exception):
    """A client error: `status` is the HTTP code, `message` says what to fix."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def plain(x) -> str:
    """A number as people write it in a message: 1,048,576 and 0.000001, never 1.04858e+06."""
    if isinstance(x, int) or (math.isfinite(x) and x == int(x) and abs(x) < 1e15):
        return f"{int(x):,}"
    if not math.isfinite(x):
        return str(x)
    if x != 0 and not 1e-6 <= abs(x) < 1e15:  # too many zeros to read: 3.39 × 10^38
        mantissa, exponent = f"{x:.2e}".split("e")
        return f"{float(mantissa):g} × 10^{int(exponent)}"
    return f"{Decimal(repr(x)):,f}"


def _reject_constant(name: str):
    raise ApiError(400, f"{name} is not a number the API accepts; send finite numbers only")


def parse_json(body: bytes) -> dict:
    """A JSON object from a request body; NaN/Infinity literals and non-objects are refused."""
    if len(body) > MAX_BODY_BYTES:
        raise ApiError(413, f"request body is {plain(len(body))} bytes; the limit is {plain(MAX_BODY_BYTES)} bytes")
    if not body.strip():
        return {}
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "request body is not UTF-8 text") from None
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as err:
        raise ApiError(400, f"request body is not valid JSON: {err.msg} at position {err.pos}") from None
    except (ValueError, RecursionError) as err:  # a 5000-digit integer, arrays nested 100k deep
        raise ApiError(400, f"request body is not JSON the API accepts: {str(err)[:120]}") from None
    if not isinstance(data, dict):
        raise ApiError(400, f"request body must be a JSON object, got {type(data).__name__}")
    return data


def number(value, name: str, lo: float = -BF16_MAX, hi: float = BF16_MAX) -> float:
    """A finite float in [lo, hi]; strings of numbers are accepted (query parameters are text)."""
    if isinstance(value, bool) or value is None:
        raise ApiError(400, f"{name} must be a number, got {json.dumps(value)}")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ApiError(400, f"{name} must be a number, got {value[:40]!r}") from None
    if not isinstance(value, (int, float)):
        raise ApiError(400, f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ApiError(400, f"{name} must be finite, got {value}")
    if not lo <= value <= hi:
        raise ApiError(400, f"{name} must be between {plain(lo)} and {plain(hi)}, got {plain(value)}")
    return value


def integer(value, name: str, lo: int, hi: int) -> int:
    """An int in [lo, hi] (an integral float such as 4.0 is accepted)."""
    x = number(value, name, lo, hi)
    if x != int(x):
        raise ApiError(400, f"{name} must be a whole number, got {plain(x)}")
    return int(x)


def power_of_two(value, name: str, lo: int, hi: int) -> int:
    x = integer(value, name, lo, hi)
    if x & (x - 1):
        raise ApiError(400, f"{name} must be a power of two from {plain(lo)} to {plain(hi)}, got {plain(x)}")
    return x


def choice(value, name: str, options) -> str:
    if value not in options:
        shown = json.dumps(value)[:40] if not isinstance(value, str) else repr(value[:40])
        raise ApiError(400, f"{name} must be one of {', '.join(options)}; got {shown}")
    return value


def number_list(value, name: str, max_len: int, min_len: int = 1) -> list[float]:
    """A list of finite numbers that fit in bfloat16."""
    if not isinstance(value, list):
        raise ApiError(400, f"{name} must be a list of numbers, got {type(value).__name__}")
    if not min_len <= len(value) <= max_len:
        raise ApiError(400, f"{name} must have {plain(min_len)} to {plain(max_len)} values, got {plain(len(value))}")
    return [number(v, f"{name}[{i}]") for i, v in enumerate(value)]


def matrix(value, name: str, rows: int, cols: int) -> list[list[float]]:
    if not isinstance(value, list) or len(value) != rows:
        raise ApiError(400, f"{name} must be a list of {rows} rows")
    return [number_list(r, f"{name}[{i}]", cols, cols) for i, r in enumerate(value)]


def get(params: dict, key: str, default, check, *args):
    """params[key] checked by check(value, key, *args), or the default when absent."""
    if key not in params or params[key] is None:
        return default
    return check(params[key], key, *args)


def only_keys(params: dict, allowed) -> None:
    extra = sorted(set(params) - set(allowed))
    if extra:
        raise ApiError(400, f"unknown parameter(s) {', '.join(map(repr, extra))}; "
                            f"this endpoint takes {', '.join(sorted(allowed)) or 'none'}")
