"""Goal 4: cost that must not grow with the size of a cutover.

* ledger append is O(1): the time of one append at 1,000, 10,000 and 100,000 records;
* ``cutover verify`` of a run with 100,000 ledger records and 1,000 artifacts;
* the HTML record (notebook export + index) of a 500-step run: time and size;
* 20 compose nodes updated in about the time of one (fake engines: a ``docker`` that takes
  0.5 s per command, as a node's pull would).
"""

from __future__ import annotations

import os
import stat
import statistics
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from cutover_lib.evidence.evidence import GENESIS, HashChain, RunFolder, _canonical, sha256_bytes

pytestmark = pytest.mark.benchmark

REPO = Path(__file__).resolve().parents[2]
CUTOVER = str(Path(sys.executable).with_name("cutover"))


def _bulk_ledger(path: Path, n: int) -> None:
    """``n`` chained step-like records written in one go (as ``HashChain.append`` would, minus
    the per-record fsync that would make this set-up take minutes)."""
    prev, out = GENESIS, []
    for i in range(1, n + 1):
        rec = {"seq": i, "ts": "2026-11-29T12:00:00.000Z", "kind": "step", "step_id": f"5.bench-{i}",
               "title": "A bench step", "outcome": "passed", "duration_s": 0.01,
               "command": f"curl https://scanner.example/healthz?i={i}", "observed": "HTTP 200", "prev": prev}
        line = _canonical(rec).encode()
        out.append(line)
        prev = sha256_bytes(line)
    path.write_bytes(b"\n".join(out) + b"\n")


def _append_times(tmp: Path, sizes: tuple[int, ...], samples: int = 200) -> dict[int, float]:
    """The median time of one append to a ledger of each size, the sizes interleaved append by
    append (side by side: a slow moment of the disk's fsync hits every size alike)."""
    chains = {}
    for size in sizes:
        folder = tmp / f"ledger-{size}"
        folder.mkdir()
        _bulk_ledger(folder / "ledger.jsonl", size)
        chains[size] = HashChain(folder / "ledger.jsonl")
    times: dict[int, list[float]] = {size: [] for size in sizes}
    for i in range(samples):
        for size, chain in chains.items():
            t = time.perf_counter()
            chain.append({"kind": "note", "text": f"sample {i}"})
            times[size].append(time.perf_counter() - t)
    return {size: statistics.median(ts) for size, ts in times.items()}


def test_ledger_append_is_constant_time(tmp_path, figure):
    curve = _append_times(tmp_path, (1_000, 10_000, 100_000))
    print("\nledger append, ms per record: " + ", ".join(f"{n:,} records {t * 1000:.2f}" for n, t in curve.items()))
    figure("ledger append at 100,000 records / at 1,000", curve[100_000] / curve[1_000], "x", 2.0,
           f"{curve[100_000] * 1000:.2f} ms against {curve[1_000] * 1000:.2f} ms (fsync included; median of 200)")
    chain = HashChain(tmp_path / "ledger-100000" / "ledger.jsonl")
    records = chain.read()
    assert [r["seq"] for r in records[-3:]] == [100_198, 100_199, 100_200]


def test_verify_of_a_large_run(tmp_path, figure):
    run = RunFolder.create(tmp_path / "executed", "bench", "cutover")
    _bulk_ledger(run.ledger_path, 100_000)
    for i in range(1_000):
        (run.path / "artifacts" / f"step-{i}.log").write_bytes(os.urandom(2048).hex().encode())
    run.write_manifest({"run_id": run.run_id, "env": "bench", "phase": "cutover", "outcome": "passed"})
    run.seal({"outcome": "passed"})
    t = time.perf_counter()
    res = subprocess.run([CUTOVER, "verify", str(run.path)], capture_output=True, text=True)
    took = time.perf_counter() - t
    assert res.returncode == 0, res.stderr
    (run.path / "artifacts" / "step-500.log").write_bytes(b"edited")
    assert subprocess.run([CUTOVER, "verify", str(run.path)], capture_output=True).returncode == 1
    figure("cutover verify, 100,000 ledger records + 1,000 artifacts", took, "s", 5.0,
           "the cutover process, wall clock")


def _steps_notebook(path: Path, cells: int, per_cell: int) -> None:
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell('env = "local"\nrun_dir = ""\nroot = ""')
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, nbformat.v4.new_code_cell(
        "from cutover_lib import Runbook\nrb = Runbook.open(env, run_dir, root=root)")]
    for c in range(cells):
        nb.cells.append(nbformat.v4.new_markdown_cell(f"### Checks, batch {c}"))
        nb.cells.append(nbformat.v4.new_code_cell(
            f"for i in range({per_cell}):\n"
            f"    rb.step(f'5.bench-{c}-{{i}}', 'Bench check', owner='cutover lead', expect='HTTP 200',\n"
            f"            command=f'curl https://scanner.example/healthz?c={c}&i={{i}}', action=lambda ctx: 'HTTP 200')"))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))


def test_html_record_of_a_500_step_run(tmp_path, figure):
    from cutover_lib.config.params import load_environment
    from cutover_lib.evidence.report import export_notebook_html, index_sections, write_index
    from cutover_lib.engine.kernels import execute_notebook

    run = RunFolder.create(tmp_path / "executed", "local", "cutover")
    _steps_notebook(tmp_path / "steps.ipynb", cells=50, per_cell=10)
    out = run.path / "notebooks" / "steps.ipynb"
    execute_notebook(tmp_path / "steps.ipynb", out, {"env": "local", "run_dir": str(run.path), "root": str(REPO)},
             REPO, 600, 600)
    env = load_environment("local", REPO / "params")
    manifest = {"run_id": run.run_id, "env": "local", "phase": "cutover", "outcome": "passed",
                "notebooks": ["notebooks/steps.ipynb"]}
    t = time.perf_counter()
    export_notebook_html(out, run.path / "html" / "steps.html")
    index = write_index(run, manifest, index_sections(run, env, REPO))
    took = time.perf_counter() - t
    steps = [r for r in run.read_ledger() if r.get("kind") == "step"]
    assert len(steps) == 500
    size = sum(p.stat().st_size for p in (run.path / "html").iterdir()) / 1e6
    assert "5.bench-49-9" in index.read_text()
    figure("HTML record of a 500-step run: time", took, "s", 2.0, "notebook export + index.html")
    figure("HTML record of a 500-step run: size", size, "MB", 5.0, "html/ folder")


def test_twenty_compose_nodes_in_about_the_time_of_one(tmp_path, monkeypatch, figure):
    """The 4.2 pull cell of the committed notebook on 1 and on 20 nodes (a docker CLI stand-in that
    takes 0.5 s per call, first on PATH)."""
    import os

    from cutover_lib.config.params import load_environment, parse_overrides
    from cutover_lib.engine.steps import Runbook
    from nb_helpers import run_cells

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "docker"
    fake.write_text("#!/bin/sh\nsleep 0.5\necho \"pulled $*\"\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    root = tmp_path / "root"
    (root / "deploy" / "compose").mkdir(parents=True)
    (root / "deploy" / "compose" / "docker-compose.prod.yaml").write_text(
        (REPO / "deploy" / "compose" / "docker-compose.prod.yaml").read_text())
    (root / "prod.env").write_text((REPO / "deploy" / "compose" / "prod.env").read_text())

    def pull(nodes: int) -> float:
        spec = ", ".join(f"{{name: n{i}, docker_host: 'unix:///tmp/fake-{i}.sock'}}" for i in range(nodes))
        env = load_environment("lab-compose", REPO / "params", parse_overrides(
            ["deploy.compose.env_file=prod.env", f"deploy.compose.nodes=[{spec}]",
             f"deploy.compose.parallelism={nodes}"]))
        run = RunFolder.create(tmp_path / "executed", "lab-compose", f"n{nodes}")
        rb = Runbook(env, run, root=root, notebook="bench")
        t = time.perf_counter()
        run_cells(rb, "05_apply.ipynb", "4.2.pull")
        took = time.perf_counter() - t
        rec = [r for r in run.read_ledger() if r.get("kind") == "step"][-1]
        assert rec["outcome"] == "passed" and (f"{nodes} nodes" in rec["observed"] or nodes == 1)
        return took

    one = pull(1)
    twenty = pull(20)
    figure("20 compose nodes / 1 node (pull)", twenty / one, "x", 1.5,
           f"{twenty:.2f} s against {one:.2f} s (each node's docker takes 0.5 s)")
