"""``cutover schedule``: Section 2's slots as systemd timers, a crontab and kubernetes CronJobs, at
T0 + each offset.  The systemd calendar expressions and units are checked by Debian's own
``systemd-analyze`` where it is installed (``verify`` needs no running systemd, only a manager it can
start in-process: probed first, skipped with the reason where that cannot work)."""

from __future__ import annotations

import configparser
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cutover_lib.config.params import load_environment
from cutover_lib.runbook.schedule import _k8s_name, cutover_command, render_schedule, write_schedule
from cutover_lib.engine.slots import slot_table
from cutover_lib.cli.app import app

REPO = Path(__file__).resolve().parents[2]
SYSTEMD_ANALYZE = "/usr/bin/systemd-analyze"
needs_systemd_analyze = pytest.mark.skipif(not Path(SYSTEMD_ANALYZE).exists(),
                                           reason=f"{SYSTEMD_ANALYZE} is not installed (Debian: apt-get install systemd)")

# params/prod.yaml: T0 2025-10-27T14:00:00Z.  label -> (unit suffix, --env, --phase, OnCalendar)
PROD = {
    "T-24h": ("t-24h", "prod", "t-24h", "2025-10-26 14:00:00 UTC"),
    "T-12h": ("t-12h", "prod", "t-12h", "2025-10-27 02:00:00 UTC"),
    "T-6h": ("t-6h", "prod", "t-6h", "2025-10-27 08:00:00 UTC"),
    "T-2h": ("t-2h", "stage", "t-2h", "2025-10-27 12:00:00 UTC"),  # the rehearsal runs in stage
    "T-30m": ("t-30m", "prod", "t-30m", "2025-10-27 13:30:00 UTC"),
    "T0": ("t0", "prod", "t0", "2025-10-27 14:00:00 UTC"),
    "T+45m": ("tplus45m", "prod", "t+45m", "2025-10-27 14:45:00 UTC"),
    "T+4h": ("tplus4h", "prod", "t+4h", "2025-10-27 18:00:00 UTC"),
}
DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
runner = CliRunner()


@pytest.fixture(scope="module")
def prod_files() -> dict[str, str]:
    env = load_environment("prod", REPO / "params")
    return render_schedule(REPO, env, cutover_bin=cutover_command(), image="registry.site/stellaops-cutover:1")


def unit(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return parser


def test_every_slot_of_phases_yaml_is_scheduled() -> None:
    env = load_environment("prod", REPO / "params")
    assert [s.label for s in slot_table(REPO, env)] == list(PROD)


def test_systemd_timers_fire_at_t0_plus_offset_and_run_the_slot(prod_files: dict[str, str]) -> None:
    for label, (key, run_env, phase, calendar) in PROD.items():
        name = f"stellaops-cutover-prod-{key}"
        timer = unit(prod_files[f"{name}.timer"])
        assert timer["Timer"]["OnCalendar"] == calendar, label
        assert timer["Timer"]["AccuracySec"] == "1s" and timer["Timer"]["Persistent"] == "false"
        assert timer["Timer"]["Unit"] == f"{name}.service"
        assert timer["Install"]["WantedBy"] == "timers.target"
        service = unit(prod_files[f"{name}.service"])["Service"]
        assert service["Type"] == "oneshot"
        assert service["WorkingDirectory"] == str(REPO) and service["Environment"] == f"CUTOVER_ROOT={REPO}"
        assert shlex.split(service["ExecStart"]) == [*cutover_command(), "run", "--env", run_env, "--phase", phase]
        assert Path(shlex.split(service["ExecStart"])[0]).is_absolute()
        assert label in unit(prod_files[f"{name}.service"])["Unit"]["Description"]
    bridge = unit(prod_files["stellaops-cutover-prod-bridge.timer"])["Timer"]
    assert bridge["OnCalendar"] == "2025-10-27 13:30:00 UTC"  # T-30m
    exec_start = unit(prod_files["stellaops-cutover-prod-bridge.service"])["Service"]["ExecStart"]
    assert shlex.split(exec_start) == [*cutover_command(), "bridge", "--env", "prod"]
    assert len([n for n in prod_files if n.endswith((".timer", ".service"))]) == 2 * (len(PROD) + 1)


@needs_systemd_analyze
def test_systemd_analyze_accepts_every_on_calendar(prod_files: dict[str, str]) -> None:
    calendars = [unit(text)["Timer"]["OnCalendar"] for name, text in prod_files.items() if name.endswith(".timer")]
    out = subprocess.run([SYSTEMD_ANALYZE, "calendar", *calendars], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert re.findall(r"Normalized form: (.*)", out.stdout) == calendars


def _verify_works(tmp_path: Path) -> str | None:
    """Why ``systemd-analyze verify`` cannot run here (None: it can), tried on a trivial unit."""
    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / "cutover-probe.service").write_text("[Service]\nType=oneshot\nExecStart=/bin/true\n")
    out = subprocess.run([SYSTEMD_ANALYZE, "verify", str(probe / "cutover-probe.service")], capture_output=True,
                         text=True, timeout=60)
    return None if out.returncode == 0 else f"systemd-analyze verify cannot run here: {out.stderr.strip()[:200]}"


@needs_systemd_analyze
def test_systemd_analyze_verify_finds_nothing_wrong(prod_files: dict[str, str], tmp_path: Path) -> None:
    why = _verify_works(tmp_path)
    if why:
        pytest.skip(why)
    write_schedule(tmp_path / "units", {n: t for n, t in prod_files.items() if n.endswith((".timer", ".service"))})
    paths = sorted(str(p) for p in (tmp_path / "units").iterdir())
    out = subprocess.run([SYSTEMD_ANALYZE, "verify", *paths], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert not [line for line in out.stderr.splitlines() if "stellaops-cutover" in line], out.stderr


@needs_systemd_analyze
def test_a_root_with_a_space_and_a_percent_is_quoted(tmp_path: Path) -> None:
    why = _verify_works(tmp_path)
    if why:
        pytest.skip(why)
    root = tmp_path / "stella ops 100%"
    shutil.copytree(REPO / "notebooks", root / "notebooks")
    files = render_schedule(root, load_environment("prod", REPO / "params"), cutover_bin=cutover_command(),
                            formats=["systemd", "cron"])
    service = unit(files["stellaops-cutover-prod-t0.service"])["Service"]
    assert service["WorkingDirectory"] == f"{root}".replace("%", "%%")
    assert service["Environment"] == f'"CUTOVER_ROOT={root}"'.replace("%", "%%")
    write_schedule(tmp_path / "units", {n: t for n, t in files.items() if "-t0." in n})
    out = subprocess.run([SYSTEMD_ANALYZE, "verify", *map(str, (tmp_path / "units").iterdir())],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "stellaops-cutover" not in out.stderr, out.stderr
    line = next(ln for ln in files["crontab"].splitlines() if ln.endswith("--phase t0 >> " + shlex.quote(
        f"{root}/executed/prod/schedule.log").replace("%", "\\%") + " 2>&1"))
    assert shlex.split(line.split(None, 5)[5].replace("\\%", "%"))[:2] == ["cd", str(root)]


def test_crontab_lines_match_the_planned_utc_times(prod_files: dict[str, str]) -> None:
    text = prod_files["crontab"]
    lines = text.splitlines()
    assert "CRON_TZ=UTC" in lines
    header = "\n".join(ln for ln in lines if ln.startswith("#"))
    assert "T0 2025-10-27 14:00 UTC" in header and "CHG-2025-1027-LAUNCH" in header
    assert "no year field" in header and "`cutover run` refuses a slot far from its hour" in header
    jobs = [ln for ln in lines if ln and not ln.startswith("#") and not re.match(r"^[A-Z_]+=", ln)]
    assert lines.index("CRON_TZ=UTC") < lines.index(jobs[0])
    assert len(jobs) == len(PROD) + 1
    expected = {(phase, run_env): calendar for _, run_env, phase, calendar in PROD.values()}
    seen = set()
    for line in jobs:
        minute, hour, dom, month, dow, command = line.split(None, 5)
        argv = shlex.split(command)
        assert argv[:2] == ["cd", str(REPO)] and argv[-3:] == [">>", f"{REPO}/executed/prod/schedule.log", "2>&1"]
        if "bridge" in argv:
            key, calendar = ("bridge", "prod"), "2025-10-27 13:30:00 UTC"
        else:
            key = (argv[argv.index("--phase") + 1], argv[argv.index("--env") + 1])
            calendar = expected[key]
        date, clock, _ = calendar.split()
        year, mon, day = date.split("-")
        hh, mm, _ = clock.split(":")
        assert (minute, hour, dom, month, dow) == (str(int(mm)), str(int(hh)), str(int(day)), str(int(mon)), "*"), line
        assert " ".join(cutover_command()) in command
        seen.add(key)
    assert len(seen) == len(PROD) + 1


def test_kubernetes_cronjobs(prod_files: dict[str, str]) -> None:
    text = prod_files["cronjobs.yaml"]
    assert "&id" not in text  # no YAML anchors: kubectl users read these
    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    assert len(docs) == len(PROD) + 1
    by_name = {d["metadata"]["name"]: d for d in docs}
    expected = {f"stellaops-cutover-prod-{key}": (["run", "--env", run_env, "--phase", phase], calendar)
                for key, run_env, phase, calendar in PROD.values()}
    expected["stellaops-cutover-prod-bridge"] = (["bridge", "--env", "prod"], "2025-10-27 13:30:00 UTC")
    assert set(by_name) == set(expected)
    for name, (args, calendar) in expected.items():
        doc = by_name[name]
        assert doc["apiVersion"] == "batch/v1" and doc["kind"] == "CronJob"
        assert DNS1123.match(name) and len(name) <= 52
        for key, value in doc["metadata"]["labels"].items():
            assert LABEL_VALUE.match(value) and len(value) <= 63, (key, value)
        assert doc["metadata"]["labels"]["app.kubernetes.io/name"] == "stellaops-cutover"
        spec = doc["spec"]
        _, mon, day = calendar.split()[0].split("-")
        hh, mm, _ = calendar.split()[1].split(":")
        assert spec["schedule"] == f"{int(mm)} {int(hh)} {int(day)} {int(mon)} *"
        assert spec["timeZone"] == "Etc/UTC" and spec["concurrencyPolicy"] == "Forbid"
        assert spec["startingDeadlineSeconds"] == 900
        assert spec["successfulJobsHistoryLimit"] == 3 and spec["failedJobsHistoryLimit"] == 3
        job = spec["jobTemplate"]["spec"]
        assert job["backoffLimit"] == 0 and job["template"]["spec"]["restartPolicy"] == "Never"
        (container,) = job["template"]["spec"]["containers"]
        assert container["name"] == "cutover" and container["image"] == "registry.site/stellaops-cutover:1"
        assert container["command"] == ["cutover", *args]
        assert container["workingDir"] == "/srv/stellaops-cutover"
    assert by_name["stellaops-cutover-prod-tplus45m"]["metadata"]["labels"]["stellaops.io/slot"] == "Tplus45m"


def test_a_long_kubernetes_name_is_shortened_and_stays_unique() -> None:
    a, b = _k8s_name("stellaops-cutover-Lab_Airgap-mirror-west-" + "x" * 40 + "-t0"), \
        _k8s_name("stellaops-cutover-Lab_Airgap-mirror-west-" + "x" * 40 + "-tplus45m")
    assert a != b and all(DNS1123.match(n) and len(n) <= 52 for n in (a, b))


def test_without_a_console_script_python_m_runs_the_cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("sys.executable", str(tmp_path / "python3"))
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert cutover_command() == [str(tmp_path / "python3"), "-m", "cutover_lib.cli"]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_cli_writes_refuses_a_changed_t0_and_rewrites_with_force(project: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["schedule", "--env", "local", "--root", str(project), "--out", str(out)]
    old_umask = os.umask(0o077)  # the files are 0644 whatever the umask: the scheduler reads them
    try:
        res = runner.invoke(app, args)
    finally:
        os.umask(old_umask)
    assert res.exit_code == 0, res.output
    written = _snapshot(out)
    assert len(written) == 2 * (len(PROD) + 1) + 2 and {"crontab", "cronjobs.yaml"} <= set(written)
    assert all((out / name).stat().st_mode & 0o777 == 0o644 for name in written)
    assert res.output.count("written: ") == len(written)
    assert "T-24h   2026-01-14 14:00  cutover run --env local --phase t-24h" in res.output
    assert "systemd-analyze calendar" in res.output and "systemctl enable --now *.timer" in res.output

    again = runner.invoke(app, args)
    assert again.exit_code == 0 and again.output.count("unchanged: ") == len(written)

    (out / "notes.txt").write_text("mine\n")
    moved = runner.invoke(app, [*args, "-p", "t0=2026-01-16T09:30:00Z"])
    assert moved.exit_code == 2
    lines = moved.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "--force" in lines[0], moved.output
    assert _snapshot(out) == {**written, "notes.txt": b"mine\n"}

    forced = runner.invoke(app, [*args, "-p", "t0=2026-01-16T09:30:00Z", "--force"])
    assert forced.exit_code == 0, forced.output
    assert "rewritten: " in forced.output
    assert "OnCalendar=2026-01-16 09:30:00 UTC" in (out / "stellaops-cutover-local-t0.timer").read_text()
    assert "30 9 16 1 *" in (out / "crontab").read_text()
    assert (out / "notes.txt").read_text() == "mine\n"  # nothing is deleted


def test_cli_default_folder_and_one_format(project: Path) -> None:
    res = runner.invoke(app, ["schedule", "-e", "local", "--root", str(project), "--format", "cron"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (project / "schedule" / "local").iterdir()) == ["crontab"]
    assert "systemd-analyze" not in res.output


@pytest.mark.parametrize("args, needle", [
    (["--env", "nowhere"], "unknown environment 'nowhere'"),
    (["--env", "local", "--format", "launchd"], "unknown --format 'launchd'"),
])
def test_cli_bad_input_is_one_line_exit_2(project: Path, tmp_path: Path, args: list[str], needle: str) -> None:
    res = runner.invoke(app, ["schedule", *args, "--root", str(project), "--out", str(tmp_path / "out")])
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], res.output
    assert "Traceback" not in res.output and not (tmp_path / "out").exists()
