"""`mxfp4 viz`: start the visualizer server and print its URL."""

from __future__ import annotations

import errno
import ipaddress
import socket
import sys
import threading
import webbrowser


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on host:port, opened before any URL is printed.

    A port in use is one error line (RuntimeError; `mxfp4` prints it and exits with 1). Port 0
    binds a free port here, so the printed URL is the one served.
    """
    host = host.strip("[]")
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: restart right after a stop
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise RuntimeError(f"port {port} on {host} is in use; choose another with --port "
                               "(--port 0 picks a free one)") from None
        raise RuntimeError(f"cannot listen on {host} port {port}: {err.strerror or err}") from None
    return sock


def run(args) -> int:
    from . import benchmarks

    if args.sync_benchmarks:
        for path in benchmarks.sync():
            print("copied", path)
        return 0
    try:
        import uvicorn

        from .app import LOOPBACK_HOSTS, create_app
    except ImportError as err:
        raise RuntimeError(f"the visualizer needs the viz extra ({err.name} is missing): "
                           'pip install "mxfp4[viz]"') from None
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be 0..65535, got {args.port}")
    local = _loopback(args.host)
    app = create_app(models_dir=args.models, allowed_hosts=LOOPBACK_HOSTS if local else None,
                     run_dirs=args.runs)
    sock = listen(args.host, args.port)
    port = sock.getsockname()[1]
    import torch

    # Requests already run in parallel worker threads; torch's own threads on top oversubscribe a
    # small CPU (a 4096x4096 tensor took 0.55 s with 1 thread, 1.7-3.2 s with 2, on a busy 2-core box).
    torch.set_num_threads(1)
    shown = f"[{args.host.strip('[]')}]" if ":" in args.host else args.host
    url = f"http://{shown}:{port}/"
    if not local:
        print(f"warning: serving on {args.host}, reachable from other machines", file=sys.stderr)
    print(f"mxfp4 viz: {url}  (models: {args.models or 'none; use --models DIR'}; Ctrl-C stops)",
          flush=True)
    if args.open:  # a moment after the server starts listening
        threading.Timer(1.0, webbrowser.open, [url]).start()
    config = uvicorn.Config(app, host=args.host.strip("[]"), port=port, log_level="warning")
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def register(sub) -> None:
    p = sub.add_parser("viz", help="start the interactive visualizer (a local web server)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    p.add_argument("--models", metavar="DIR", default=None,
                   help="folder of .safetensors files / model folders the 'Your model' view may read")
    p.add_argument("--runs", metavar="DIR", nargs="+", default=None,
                   help="`mxfp4 train` output folders, or folders of them, for the Training view")
    p.add_argument("--open", action="store_true", help="open the page in a web browser")
    p.add_argument("--sync-benchmarks", action="store_true",
                   help="copy docs/benchmarks/*.json into the package data and exit")
    p.set_defaults(func=run)
