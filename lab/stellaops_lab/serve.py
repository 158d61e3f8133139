"""Run one lab service: ``python -m stellaops_lab.serve --service NAME --port N --data-dir DIR``.

The lab is a named local stand-in for a Stella Ops stack; each service is one of these
processes. Options (all have container-friendly environment fallbacks):

    --service NAME       authority, scanner, signer, attestor, notify, web, runtime
    --port N             listen port (loopback by default, --host to change)
    --data-dir DIR       shared state: DIR/lab.sqlite3, DIR/keys/
    --public-url URL     base URL the service announces (default http://HOST:PORT)
    --signer-url URL     where scanner and attestor reach the signer
    --scan-seconds S     default scan duration      (env LAB_SCAN_SECONDS, default 2.0)
    --trust-dir DIR      extra trusted public keys  (env LAB_TRUST_DIR; default
                         samples/dsse/trusted of this checkout and DIR/trusted)

Environment: ``STELLAOPS_RELEASE`` (the ``version`` in /healthz, default 2025.09.2),
``LAB_FAULTS`` (JSON object of faults baked into this process -- a faulty release -- not stored, e.g.
``{"scanner.unhealthy": true}``), ``LAB_CLIENT_SECRET`` (authority client secret).

The ``<service>.down`` fault is polled every 0.5 s (at 0.2 s, a lab's seven idle services waking
up cost ~9 ms of CPU a second): while set, the listening socket and
every open connection are closed (clients get "connection refused"); once cleared the
service listens again.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import signal
from pathlib import Path
from typing import Any

import tornado.httpserver
import tornado.web

from . import _store
from ._config import DEFAULT_RELEASE, SERVICES
from ._web_base import Metrics, ServiceContext, common_handlers

__all__ = ["build_app", "main"]

_MODULES = {
    "authority": "_authority",
    "scanner": "_scanner",
    "signer": "_signer",
    "attestor": "_attestor",
    "notify": "_notify",
    "web": "_webui",
    "runtime": "_runtime",
}
DOWN_POLL_SECONDS = 0.5


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m stellaops_lab.serve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--service", required=True, choices=SERVICES)
    parser.add_argument("--port", required=True, type=int)
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--public-url", default=None)
    parser.add_argument("--signer-url", default=os.environ.get("LAB_SIGNER_URL", "http://127.0.0.1:18082"))
    parser.add_argument("--scan-seconds", type=float,
                        default=float(os.environ.get("LAB_SCAN_SECONDS", "2.0")))
    parser.add_argument("--trust-dir", action="append", type=Path, default=[])
    return parser.parse_args(argv)


def _default_trust_dirs(data_dir: Path) -> list[Path]:
    # samples/ of the checkout (lab/stellaops_lab/ -> the repository) or of the image (/opt/stellaops)
    here = Path(__file__).resolve()
    checkout = next((p for p in (here.parents[2], here.parents[1]) if (p / "samples" / "dsse").is_dir()),
                    here.parents[2])
    dirs = [checkout / "samples" / "dsse" / "trusted", data_dir / "trusted"]
    env = os.environ.get("LAB_TRUST_DIR")
    if env:
        dirs += [Path(p) for p in env.split(os.pathsep) if p]
    return dirs


def build_app(ctx: ServiceContext) -> tornado.web.Application:
    """The tornado application of ``ctx.service``: common handlers plus its own."""
    module = importlib.import_module(f".{_MODULES[ctx.service]}", __package__)
    routes: list[Any] = common_handlers(ctx) + module.handlers(ctx)
    route_of = {spec[1]: spec[0] for spec in routes}  # handler class -> its route (http_route)

    def log_request(handler: tornado.web.RequestHandler) -> None:
        status = handler.get_status()
        seconds = handler.request.request_time()
        route = route_of.get(type(handler), "")  # "" for a request no route matched (404)
        ctx.metrics.observe(route, handler.request.method or "", status, seconds)
        logging.getLogger("lab.access").info(
            "%s %s %s %d %.1fms", ctx.service, handler.request.method, handler.request.uri,
            status, seconds * 1000,
        )

    return tornado.web.Application(routes, log_function=log_request, compress_response=False)


def _apply_env_faults(ctx: ServiceContext) -> None:
    raw = os.environ.get("LAB_FAULTS")
    if not raw:
        return
    faults = json.loads(raw)
    if not isinstance(faults, dict):
        raise SystemExit("LAB_FAULTS must be a JSON object")
    for name, value in faults.items():
        service, _, fault = str(name).partition(".")
        if service == ctx.service and value not in (None, False, 0):
            ctx.baked[fault] = value


class _Listener:
    """Owns the HTTP server so the ``down`` fault can close and reopen it."""

    def __init__(self, app: tornado.web.Application, host: str, port: int) -> None:
        self.app, self.host, self.port = app, host, port
        self.server: tornado.httpserver.HTTPServer | None = None

    def start(self) -> None:
        self.server = tornado.httpserver.HTTPServer(self.app, xheaders=False)
        self.server.listen(self.port, self.host)

    async def stop(self) -> None:
        if self.server is not None:
            server, self.server = self.server, None
            server.stop()
            await server.close_all_connections()


async def _run(args: argparse.Namespace) -> None:
    data_dir: Path = args.data_dir.resolve()
    db = _store.connect(data_dir)
    host = f"[{args.host}]" if ":" in args.host else args.host
    ctx = ServiceContext(
        service=args.service,
        data_dir=data_dir,
        public_url=(args.public_url or f"http://{host}:{args.port}").rstrip("/"),
        release=os.environ.get("STELLAOPS_RELEASE", DEFAULT_RELEASE),
        signer_url=args.signer_url.rstrip("/"),
        scan_seconds=args.scan_seconds,
        trust_dirs=_default_trust_dirs(data_dir) + list(args.trust_dir),
        db=db,
        metrics=Metrics(args.service),
    )
    _apply_env_faults(ctx)
    listener = _Listener(build_app(ctx), args.host, args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if not ctx.fault("down"):
        listener.start()
    logging.getLogger("lab").info("%s listening on %s (data %s)", args.service, ctx.public_url, data_dir)
    try:
        while not stop.is_set():
            is_down = bool(ctx.fault("down"))
            if is_down and listener.server is not None:
                logging.getLogger("lab").info("%s: fault down set, closing listener", args.service)
                await listener.stop()
            elif not is_down and listener.server is None:
                logging.getLogger("lab").info("%s: listening again", args.service)
                listener.start()
            try:
                await asyncio.wait_for(stop.wait(), DOWN_POLL_SECONDS)
            except asyncio.TimeoutError:
                pass
    finally:
        await listener.stop()
        db.close()


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(_run(args))


if __name__ == "__main__":
    main()
