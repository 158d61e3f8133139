"""Running commands: timeout, output streamed to an artifact log, masking, dry-run rendering.

``run_command`` is the one way cutover_lib starts a program.  The command line shown in
evidence is :func:`render` of the argv: shell-quoted like an operator would type it, with
every resolved secret replaced by ``***``.  Output (stdout and stderr, interleaved) streams
line by line into a log file, masked, and the last lines are kept for the status card.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config.secrets import mask
from ..errors import CommandFailed, ToolMissing

__all__ = ["CommandResult", "render", "run_command"]

TAIL_LINES = 40
_MAX_CAPTURE = 32 * 1024 * 1024  # a parsed output larger than this is cut (and then fails to parse)


def render(argv: Sequence[str], env: Mapping[str, str] | None = None) -> str:
    """The masked, shell-quoted command line, with ``DOCKER_HOST=...``-style prefixes for ``env``."""
    prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
    line = shlex.join([str(a) for a in argv])
    return mask(f"{prefix} {line}" if prefix else line)


@dataclass
class CommandResult:
    command: str
    returncode: int | None
    duration_s: float
    tail: list[str] = field(default_factory=list)
    log_path: Path | None = None
    timed_out: bool = False
    stdout: str | None = None  # the whole standard output, kept apart, when asked for (to parse it)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    @property
    def output(self) -> str:
        return "\n".join(self.tail)


def run_command(
    argv: Sequence[str],
    *,
    timeout: float,
    log_path: Path | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    check: bool = True,
    input_text: str | None = None,
    capture_stdout: bool = False,
    pass_fds: Sequence[int] = (),
) -> CommandResult:
    """Run ``argv`` (never through a shell) with a hard timeout.

    ``env`` is added to the current environment.  On timeout the whole process group is
    killed.  With ``check`` a non-zero exit or a timeout raises :class:`CommandFailed`
    whose message holds the masked command and the last output lines.  With ``capture_stdout``
    standard output is also kept whole and apart from standard error (``result.stdout``), for a
    tool whose output is parsed (``--output json``); the log and the tail still get both.
    """
    argv = [str(a) for a in argv]
    shown = render(argv, {k: v for k, v in (env or {}).items() if k in ("DOCKER_HOST", "KUBECONFIG")})
    exe = argv[0]
    if os.sep not in exe and shutil.which(exe, path=(env or {}).get("PATH") or os.environ.get("PATH")) is None:
        raise ToolMissing(f"{exe} is not installed (needed for: {shown})",
                          hint=f"install {exe} or put it on PATH", program=exe)
    full_env = {**os.environ, **(env or {})}
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    started = time.monotonic()
    log = open(log_path, "a", encoding="utf-8") if log_path else None
    if log_path:
        os.chmod(log_path, 0o600)
        log.write(f"$ {shown}\n")  # type: ignore[union-attr]
    try:
        try:
            proc = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE if capture_stdout else subprocess.STDOUT,
                stdin=subprocess.PIPE if input_text is not None else subprocess.DEVNULL,
                env=full_env, cwd=cwd, start_new_session=True, text=True, errors="replace", bufsize=1,
                pass_fds=tuple(pass_fds))
        except FileNotFoundError as exc:
            raise ToolMissing(f"{exe} is not installed (needed for: {shown})",
                              hint=f"install {exe} or put it on PATH", program=exe) from exc
        except PermissionError as exc:
            raise ToolMissing(f"{exe} is not executable", hint=f"chmod +x {exe}") from exc

        out_chunks: list[str] = []
        log_lock = threading.Lock()

        def pump(stream: Any, keep: list[str] | None) -> None:
            for raw in stream:
                if keep is not None and sum(map(len, keep)) < _MAX_CAPTURE:
                    keep.append(raw)
                line = mask(raw.rstrip("\n"))
                with log_lock:
                    tail.append(line)
                    if log:
                        log.write(line + "\n")
                        log.flush()

        readers = [threading.Thread(target=pump, args=(proc.stdout, out_chunks if capture_stdout else None),
                                    daemon=True)]
        if capture_stdout:
            readers.append(threading.Thread(target=pump, args=(proc.stderr, None), daemon=True))
        for reader in readers:
            reader.start()
        if input_text is not None:
            assert proc.stdin is not None
            try:
                proc.stdin.write(input_text)
                proc.stdin.close()
            except BrokenPipeError:
                pass
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        for reader in readers:
            reader.join(timeout=5)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        duration = time.monotonic() - started
        if log:
            log.write(f"# exit {proc.returncode}{' (timed out)' if timed_out else ''} after {duration:.2f}s\n")
    finally:
        if log:
            log.close()
    result = CommandResult(shown, proc.returncode, duration, list(tail), log_path, timed_out,
                           "".join(out_chunks) if capture_stdout else None)
    if check and not result.ok:
        last = " | ".join(list(tail)[-3:]) or "(no output)"
        if timed_out:
            raise CommandFailed(f"`{shown}` timed out after {timeout:g}s; last output: {last}",
                                hint="raise timeouts.command in params if the step is just slow")
        raise CommandFailed(f"`{shown}` exited {proc.returncode}; last output: {last}")
    return result
