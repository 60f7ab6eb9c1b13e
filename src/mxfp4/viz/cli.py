"""`mxfp4 viz`: start the visualizer server and print its URL."""

from __future__ import annotations

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
    if args.port == 0:  # pick a free port now, so that the printed URL is the real one
        with socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET) as s:
            s.bind((args.host.strip("[]"), 0))
            args.port = s.getsockname()[1]
    import torch

    # Requests already run in parallel worker threads; torch's own threads on top oversubscribe a
    # small CPU (a 4096x4096 tensor took 0.55 s with 1 thread, 1.7-3.2 s with 2, on a busy 2-core box).
    torch.set_num_threads(1)
    local = _loopback(args.host)
    allowed = LOOPBACK_HOSTS if local else None
    app = create_app(models_dir=args.models, allowed_hosts=allowed)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{shown}:{args.port}/"
    if not local:
        print(f"warning: serving on {args.host}, reachable from other machines", file=sys.stderr)
    print(f"mxfp4 viz: {url}  (models: {args.models or 'none; use --models DIR'}; Ctrl-C stops)",
          flush=True)
    if args.open:  # a moment after the server starts listening
        threading.Timer(1.0, webbrowser.open, [url]).start()
    uvicorn.run(app, host=args.host.strip("[]"), port=args.port, log_level="warning")
    return 0


def register(sub) -> None:
    p = sub.add_parser("viz", help="start the interactive visualizer (a local web server)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    p.add_argument("--models", metavar="DIR", default=None,
                   help="folder of .safetensors files / model folders the 'Your model' view may read")
    p.add_argument("--open", action="store_true", help="open the page in a web browser")
    p.add_argument("--sync-benchmarks", action="store_true",
                   help="copy docs/benchmarks/*.json into the package data and exit")
    p.set_defaults(func=run)
