"""Air-gap guard for the airgap/mirror rehearsals (test support, loaded through PYTHONPATH).

Every Python process of the rehearsal -- the ``cutover`` runner, each notebook kernel, the lab's
stand-in ``stellaops-cli`` -- records in ``$AIRGAP_GUARD_LOG`` that it runs under the guard, and
every name resolution or connection to anything but loopback (a Python audit hook on
``socket.getaddrinfo`` and ``socket.connect``).  The test asserts the guard was loaded by the
kernels and that nothing left loopback.  Unix sockets (the Docker engine) are local by nature.
"""

import os
import socket
import sys

_LOG = os.environ.get("AIRGAP_GUARD_LOG")
_LOCAL_NAMES = {"localhost", "ip6-localhost", "::1", ""}


def _local(host: object) -> bool:
    name = host.decode() if isinstance(host, bytes) else str(host)
    return name in _LOCAL_NAMES or name.startswith("127.")


def _write(line: str) -> None:
    with open(_LOG, "a", encoding="utf-8") as f:
        f.write(f"{os.getpid()} {line}\n")


def _hook(event: str, args: tuple) -> None:
    if event == "socket.getaddrinfo" and args[0] is not None and not _local(args[0]):
        _write(f"VIOLATION getaddrinfo {args[0]!r} by {' '.join(sys.orig_argv[1:5])}")
    elif event == "socket.connect":
        sock, address = args
        if getattr(sock, "family", None) in (socket.AF_INET, socket.AF_INET6) and not _local(address[0]):
            _write(f"VIOLATION connect {address!r} by {' '.join(sys.orig_argv[1:5])}")


if _LOG:
    _write(f"guard loaded in {' '.join(sys.orig_argv[1:5])}")
    sys.addaudithook(_hook)
