"""Lab stand-in for ``dotnet StellaOps.Scanner.WebService.dll health queue`` -- a named
stand-in, NOT the .NET host and NOT the Scanner WebService.

The runbook (Section 4.4) checks the scanner's queue connectivity with
``docker exec stellaops-scanner-web dotnet StellaOps.Scanner.WebService.dll health queue``.
Installed as ``dotnet`` in the lab's bin folder, this module answers exactly that argv
(``StellaOps.Scanner.WebService.dll health queue``; anything else exits 2 with one line
saying that only this command is stood in) by asking the lab scanner
``GET {STELLAOPS_BACKEND_URL}/api/v1/queue/health``:

* HTTP 200 with ``"status": "Healthy"``: prints ``Queue: <queue> (depth N): Healthy``, exit 0;
* anything else: prints what it saw (``Queue: disconnected: Unhealthy (HTTP 503)``), exit 1;
* service unreachable: one ``dotnet (lab stand-in): error: ...`` line on stderr, exit 1;
  ``STELLAOPS_BACKEND_URL`` missing: the same, exit 2.

``STELLAOPS_TLS_VERIFY`` and ``STELLAOPS_HTTP_TIMEOUT`` apply as for the stand-in
``stellaops-cli`` (:mod:`stellaops_lab.stellaops_cli`).
"""

from __future__ import annotations

import sys

from .stellaops_cli import Settings, answer_json, env_url, guarded, request

__all__ = ["EXPECTED_ARGV", "main"]

PROG = "dotnet (lab stand-in)"
EXPECTED_ARGV = ["StellaOps.Scanner.WebService.dll", "health", "queue"]


def _check() -> int:
    backend = env_url("STELLAOPS_BACKEND_URL")
    settings = Settings.from_env()
    with settings.client() as client:
        response = request(client, "GET", f"{backend}/api/v1/queue/health")
    body = answer_json(response)
    body = body if isinstance(body, dict) else {}
    queue = body.get("queue", "?")
    status = body.get("status") or "no status"
    if response.status_code == 200 and status == "Healthy":
        depth = f" (depth {body['depth']})" if "depth" in body else ""
        print(f"Queue: {queue}{depth}: Healthy")
        return 0
    detail = "" if body else f" {response.text.strip()[:200]!r}"
    print(f"Queue: {queue}: {status} (HTTP {response.status_code}){detail}")
    return 1


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if args != EXPECTED_ARGV:
        print(f"{PROG}: only `dotnet {' '.join(EXPECTED_ARGV)}` is stood in here "
              f"(got `dotnet {' '.join(args)}`)", file=sys.stderr)
        return 2
    return guarded(PROG, _check)


if __name__ == "__main__":
    sys.exit(main())
