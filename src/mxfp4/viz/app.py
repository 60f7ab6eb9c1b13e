"""The Starlette app: static pages, the JSON API of routes.py, limits and security headers."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from . import routes
from .training import check_dirs
from .validate import MAX_BODY_BYTES, ApiError, parse_json, plain

STATIC = Path(__file__).resolve().parent / "static"
VIEWS = ("block", "values", "rules", "matmul", "moe", "perf", "training", "model")
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "[::1]", "::1"]
SECURITY_HEADERS = {
    # Everything is served from this origin: no CDN, no inline script.
    "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}
log = logging.getLogger("mxfp4.viz")


def json_response(data, status: int = 200) -> Response:
    # allow_nan=False: a NaN or inf that slipped through is a server bug, not silent bad JSON.
    body = json.dumps(data, allow_nan=False, separators=(",", ":"))
    return Response(body, status_code=status, media_type="application/json")


async def read_body(request: Request) -> bytes:
    """The request body, refused with 413 as soon as it passes MAX_BODY_BYTES."""
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
        shown = plain(int(length)) if length.isdigit() else repr(length[:20])
        raise ApiError(413, f"request body is {shown} bytes; the limit is "
                            f"{plain(MAX_BODY_BYTES)} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ApiError(413, f"request body passes the limit of {plain(MAX_BODY_BYTES)} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def api_route(method: str, path: str, handler, ctx: routes.Context) -> Route:
    async def endpoint(request: Request) -> Response:
        if method == "GET":
            params = dict(request.query_params)
        else:
            ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype != "application/json":
                raise ApiError(415, f"send the request body as application/json, not {ctype or 'nothing'}")
            params = parse_json(await read_body(request))
        return json_response(await run_in_threadpool(handler, params, ctx))

    return Route(path, endpoint, methods=[method], name=path)


async def api_error(request: Request, exc: ApiError) -> Response:
    return json_response({"error": exc.message, "status": exc.status}, exc.status)


async def http_error(request: Request, exc: HTTPException) -> Response:
    if request.url.path.startswith("/api/") or exc.status_code != 404:
        message = exc.detail
        if exc.status_code == 404:
            message = f"no API endpoint {request.url.path}"
        elif exc.status_code == 405:
            headers = {k.lower(): v for k, v in (exc.headers or {}).items()}
            allowed = headers.get("allow", "another method")
            message = f"{request.method} is not allowed on {request.url.path}; use {allowed}"
        return json_response({"error": message, "status": exc.status_code}, exc.status_code)
    return Response("Not found. The visualizer's pages are " + ", ".join("/" + v for v in VIEWS) + ".\n",
                    status_code=404, media_type="text/plain")


async def server_error(request: Request, exc: Exception) -> Response:
    log.exception("error in %s", request.url.path)
    return json_response({"error": f"internal error: {type(exc).__name__}: {exc}", "status": 500}, 500)


class SecurityHeaders:
    """Pure ASGI middleware adding SECURITY_HEADERS to every HTTP response."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(models_dir: str | None = None, benchmark_dirs=None,
               allowed_hosts: list[str] | None = None, run_dirs=None) -> Starlette:
    """The visualizer app. `allowed_hosts` guards against DNS rebinding (None: no check);
    `run_dirs`: `mxfp4 train` output folders, or folders of them, for the Training view."""
    if models_dir is not None and not Path(models_dir).is_dir():
        raise FileNotFoundError(f"--models {models_dir!r} is not a directory")
    ctx = routes.Context(models_dir=None if models_dir is None else str(Path(models_dir).resolve()),
                         benchmark_dirs=benchmark_dirs, run_dirs=check_dirs(run_dirs), views=VIEWS)

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    table = [api_route(m, p, h, ctx) for m, p, h in routes.ENDPOINTS]
    table += [Route("/", page)] + [Route(f"/{v}", page) for v in VIEWS]
    table.append(Mount("/static", StaticFiles(directory=STATIC), name="static"))
    middleware = [Middleware(SecurityHeaders)]
    if allowed_hosts:
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts))
    return Starlette(routes=table, middleware=middleware,
                     exception_handlers={ApiError: api_error, HTTPException: http_error,
                                         Exception: server_error})
