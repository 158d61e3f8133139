"""Helpers for the notebook tests (a plain module: tests/notebooks is not a package)."""

from __future__ import annotations

import random
import re
import shlex
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from stellaops_lab.demo import DEMO_APPROVERS  # the demo's named approvers: one list for demo and tests
import forkrun  # tests/forkrun.py: cutover as a process forked from a warm one

REPO = Path(__file__).resolve().parents[2]


def free_block(count: int = 10) -> int:
    for _ in range(200):
        base = random.randrange(20000, 29000, 10)
        socks = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free block of loopback ports")


def make_project(dest: Path, port_base: int) -> Path:
    for name in ("params", "notebooks", "samples", "deploy", "secrets"):
        shutil.copytree(REPO / name, dest / name)
    local = dest / "params" / "local.yaml"
    text = re.sub(r"127\.0\.0\.1:1808(\d)", lambda m: f"127.0.0.1:{port_base + int(m.group(1))}", local.read_text())
    text = text.replace("port_base: 18080", f"port_base: {port_base}")
    local.write_text(text)
    return dest


#: commands ``cutover`` runs in this process (typer's runner: the command's own code path, without an
#: interpreter start-up each): they start no kernel and set no signal handler; ``run`` and ``plan``,
#: whose process is what they manage, always get their own
IN_PROCESS = ("approve", "verify")


def in_process(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """``cutover ARGV`` through typer's runner, as a finished process would report it."""
    from typer.testing import CliRunner

    from cutover_lib.cli.app import app

    res = CliRunner().invoke(app, argv)
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception  # a bug, not an exit code: show its traceback
    return subprocess.CompletedProcess(["cutover", *argv], res.exit_code, res.stdout, res.stderr)


def cutover(root: Path, *args: str, timeout: float = 600, post_smoke: bool = True) -> subprocess.CompletedProcess[str]:
    """``cutover ARGS --root ROOT``; a run that stops at the post-smoke gate is approved there and
    resumed (``post_smoke``: see :func:`through_post_smoke`)."""
    def call(*argv: str) -> subprocess.CompletedProcess[str]:
        extra = [] if argv[0] == "verify" else ["--root", str(root)]
        if argv[0] in IN_PROCESS:
            return in_process([*argv, *extra])
        return forkrun.run([*argv, *extra], cwd=root, timeout=timeout)

    res = call(*args)
    return through_post_smoke(res, call, args) if post_smoke else res


def run_dir_from(stdout: str) -> Path:
    """The run folder a ``cutover run`` printed (``evidence: PATH``)."""
    line = next(ln for ln in stdout.splitlines() if ln.startswith("evidence: "))
    return Path(line.split(": ", 1)[1].strip())


def steps_of(run_dir: Path) -> dict[str, dict]:
    """Each step's record in a run's ledger; a resumed attempt's "passed in an earlier attempt"
    keeps the earlier record (what the step observed)."""
    import json

    out: dict[str, dict] = {}
    for line in (run_dir / "ledger.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec.get("kind") == "step":
            resumed = rec["outcome"] == "skipped" and rec.get("observed", "").startswith("passed in an earlier attempt")
            if not (resumed and rec["step_id"] in out):
                out[rec["step_id"]] = rec
    return out


def through_post_smoke(res: subprocess.CompletedProcess[str], call, args: tuple[str, ...]
                       ) -> subprocess.CompletedProcess[str]:
    """T0 as the approvers live it: a cutover run whose smoke decision passed stops at the post-smoke
    gate (exit 3) printing ``next: cutover approve ... --gate post-smoke ... --run RUN``; the demo
    approvers record exactly those, then the run is resumed.  Returns the two attempts' output
    together (the resume's exit code).  Any other result is returned as it is."""
    nexts = [ln.split(":", 1)[1].strip() for ln in res.stdout.splitlines() if ln.startswith("next:")]
    per_run = (" --gate post-smoke ", " --gate go-no-go ")  # the gates given for one run, at that run's gate
    if res.returncode != 3 or not nexts or not all(any(g in n for g in per_run) and " --run " in n for n in nexts):
        return res
    for line in nexts:
        argv = shlex.split(line)[1:]  # (without the program name)
        role = argv[argv.index("--role") + 1]
        argv[argv.index("--name") + 1] = dict(DEMO_APPROVERS[argv[argv.index("--gate") + 1]])[role]
        approved = call(*argv)
        assert approved.returncode == 0, approved.stdout + approved.stderr
    then = next(ln.split(":", 1)[1].strip() for ln in res.stdout.splitlines() if ln.startswith("then:"))
    resumed = call(*shlex.split(then)[1:], *_keep_overrides(args))
    return subprocess.CompletedProcess(resumed.args, resumed.returncode, res.stdout + resumed.stdout,
                                       res.stderr + resumed.stderr)


def _keep_overrides(args: tuple[str, ...]) -> list[str]:
    """The ``-p`` overrides of the first attempt: a resume runs with the params it started with."""
    out: list[str] = []
    for i, a in enumerate(args):
        if a in ("-p", "--param") and i + 1 < len(args):
            out += [a, args[i + 1]]
    return out


def variant(env: str, *pairs: str, overrides: dict | None = None, params: Path = REPO / "params"):
    """params/<env>.yaml as it would validate with these ``KEY=VALUE`` changes (or ``overrides``)
    made in the file itself: a test's stand-in for a reviewed edit, since prod refuses most ``-p``."""
    from cutover_lib.config.params import _load_chain, _merge, parse_overrides, validate

    data, _ = _load_chain(params / f"{env}.yaml", params)
    data = _merge(_merge(data, overrides or {}), parse_overrides(list(pairs)))
    data.setdefault("name", env)
    env, problems = validate(data, params.resolve().parent)
    assert env is not None, problems
    return env


@contextmanager
def started_lab(folder: Path) -> Iterator[Path]:
    """A project copy in ``folder`` whose ``local`` lab runs on a free block of ports (Prometheus
    too) for the ``with`` block; stopped afterwards.  Yields the project root."""
    from stellaops_lab import down, up

    root = make_project(folder, free_block())
    cfg = lab_config(root)
    try:
        up(cfg)
        yield root
    finally:
        down(cfg)


@contextmanager
def faults_cleared(root: Path) -> Iterator[Path]:
    """The project's lab with no fault set, before and after the ``with`` block."""
    from stellaops_lab import clear_faults

    clear_faults(lab_config(root))
    try:
        yield root
    finally:
        clear_faults(lab_config(root))


def lab_config(root: Path):
    from cutover_lib.config.params import load_environment
    from stellaops_lab import LabConfig

    from stellaops_lab.settings import lab_settings

    lab = lab_settings(load_environment("local", root / "params"))
    return LabConfig.from_port_base(root / lab.data_dir, lab.port_base)


DEMO_APPROVALS = [(gate, role, name) for gate, people in DEMO_APPROVERS.items() for role, name in people]


def approve_all(root: Path, env: str = "local") -> None:
    """Every demo approval through ``cutover approve``, in this process (typer's runner: the
    command's own code path, without eight interpreter start-ups)."""
    from typer.testing import CliRunner

    from cutover_lib.cli.app import app

    runner = CliRunner()
    for gate, role, name in DEMO_APPROVALS:
        if gate in ("post-smoke", "go-no-go"):  # (given for one run, at its gate: see through_post_smoke)
            continue
        res = runner.invoke(app, ["approve", "--env", env, "--gate", gate, "--role", role, "--name", name,
                                  "--record", "CHG-TEST", "--root", str(root)])
        assert res.exit_code == 0, res.output


def notebook_cells(notebook: str, root: Path = REPO) -> tuple[str, list[str]]:
    """The committed notebook's import lines (its setup cell without ``Runbook.open``) and its code cells."""
    import nbformat

    nb = nbformat.read(str(root / "notebooks" / notebook), as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code" and "parameters" not in c.metadata.get("tags", [])]
    setup = "\n".join(line for line in code[0].splitlines() if line.startswith(("from ", "import ")))
    return setup, code[1:]


def run_cells(rb, notebook: str, *step_ids: str, root: Path = REPO) -> dict:
    """Execute, with ``rb``, the committed cells of ``notebook`` that make the steps ``step_ids``, in
    notebook order (plus any cell before them that they need, such as the one defining ``event``);
    return the namespace.  What the test runs is what the notebook says, not a copy of it."""
    setup, cells = notebook_cells(notebook, root)
    ns: dict = {"rb": rb}
    exec(compile(setup, f"{notebook}:setup", "exec"), ns)
    def makes(cell: str, sid: str) -> bool:  # the step id is the first argument of a call in the cell
        return re.search(r'\(\s*(?:rb,\s*)?f?"' + re.escape(sid) + '"', cell) is not None  # (f"...-{i}": a loop)

    wanted = [c for c in cells if any(makes(c, sid) for sid in step_ids)]
    assert len(wanted) == len(step_ids), f"{notebook} has no cell for one of {step_ids}"
    for src in wanted:
        exec(compile(src, f"{notebook}:cell", "exec"), ns)
    return ns
