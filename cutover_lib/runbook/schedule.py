"""Section 2 on a scheduler: ``cutover schedule --env prod`` writes, from T0 in params, a job per
slot (T-24h ... T+4h) that runs ``cutover run --env ENV --phase SLOT`` at T0 + its offset, and one
that starts ``cutover bridge --env ENV`` at T-30m (the bridge kept updated until the change closes).

Three forms of the same schedule, each for an existing scheduler (we never run one ourselves):

* ``systemd`` -- a ``.service`` (oneshot) and a ``.timer`` (``OnCalendar=`` with the year: it
  fires once) per job, named ``stellaops-cutover-<env>-<slot>`` (``t+45m`` -> ``tplus45m``:
  systemd unit names cannot hold ``+``);
* ``cron`` -- one ``crontab`` in UTC (``CRON_TZ=UTC``).  Cron has no year field: each line would
  fire again a year later, which is why its header says to remove it once the change closes;
* ``kubernetes`` -- ``cronjobs.yaml``, a ``batch/v1`` CronJob per job (``timeZone: Etc/UTC``).

Rendering is pure (:func:`render_schedule`: file name -> text, the same text for the same
params, so a second run can tell whether anything changed); :func:`write_schedule` writes it,
refusing to overwrite a file that differs unless told to, and never deleting one.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError

if TYPE_CHECKING:
    from ..config.models import Environment

__all__ = ["BRIDGE_OFFSET", "DEFAULT_IMAGE", "FORMATS", "Job", "cutover_command", "jobs", "render_schedule",
           "write_schedule"]

FORMATS = ("systemd", "cron", "kubernetes")
DEFAULT_IMAGE = "stellaops-cutover:latest"
BRIDGE_OFFSET = timedelta(minutes=-30)  # T-30m: the go/no-go call opens the bridge
K8S_WORKDIR = "/srv/stellaops-cutover"
_K8S_NAME_MAX = 52  # a CronJob's name: 63 less the 11 characters its Jobs append
_DNS1123 = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_PLAIN = re.compile(r"[\w@%+=:,./-]+")  # a word systemd and sh take as it is


@dataclass(frozen=True)
class Job:
    """One scheduled command: a slot's run, or the bridge."""

    key: str            # "t-24h", "tplus45m", "bridge": the last part of the unit name
    label: str          # "T-24h" (Section 2), or "bridge"
    planned: datetime   # UTC
    args: tuple[str, ...]  # after `cutover`: ("run", "--env", "prod", "--phase", "t-24h")
    what: str           # the activity and its owner, for descriptions and comments

    def command(self) -> str:
        """As an operator would type it: ``cutover run --env prod --phase t-24h``."""
        return shlex.join(["cutover", *self.args])


def jobs(root: Path, env: "Environment") -> list[Job]:
    """Every slot of ``notebooks/phases.yaml`` as a job, and the bridge at T-30m, by planned time
    (the bridge right after the T-30m slot).  The rehearsal slot runs in ``rehearsal.env`` (prod:
    stage) when params name one, as :func:`cutover_lib.engine.slots.slot_runs` looks for it there."""
    from ..config.durations import format_duration
    from ..engine.slots import slot_table

    out = []
    for slot in slot_table(root, env):
        run_env = (env.rehearsal.env or env.name) if slot.phase == "rehearsal" else env.name
        out.append(Job(slot.name.replace("+", "plus"), slot.label, slot.planned.astimezone(timezone.utc),
                       ("run", "--env", run_env, "--phase", slot.name), f"{slot.activity} Owner: {slot.owner}."))
    bridge_at = (env.t0 + BRIDGE_OFFSET).astimezone(timezone.utc)
    out.append(Job("bridge", "bridge", bridge_at, ("bridge", "--env", env.name),
                   f"#{env.bridge.channel} kept updated every {format_duration(env.bridge.heartbeat)} until the "
                   "change closes."))
    return sorted(out, key=lambda j: j.planned)  # stable: the bridge stays after the T-30m slot


def cutover_command() -> list[str]:
    """The ``cutover`` a scheduler should start: the console script beside this Python (its
    virtual environment), else the one on PATH, else this Python with ``-m cutover_lib.cli``;
    absolute, since a scheduler's PATH is not the operator's."""
    beside = Path(sys.executable).parent / "cutover"  # not resolved: a venv's python is a symlink
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside.absolute())]
    found = shutil.which("cutover")
    if found:
        return [str(Path(found).absolute())]
    return [str(Path(sys.executable).absolute()), "-m", "cutover_lib.cli"]


def _unit(env: "Environment", job: Job) -> str:
    return f"stellaops-cutover-{env.name}-{job.key}"


# --- systemd ------------------------------------------------------------------------------

def _sd(text: str) -> str:
    """A value in a unit file: ``%`` is a specifier there."""
    return text.replace("%", "%%")


def _sd_word(word: str, *, exec_line: bool = False) -> str:
    """One word of ``ExecStart=`` / ``Environment=``, quoted as systemd splits them (``$`` expands
    only in ``ExecStart=``)."""
    text = _sd(word).replace("$", "$$") if exec_line else _sd(word)
    if _PLAIN.fullmatch(word):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _on_calendar(when: datetime) -> str:
    return f"{when:%Y-%m-%d %H:%M:%S} UTC"


def _systemd(root: Path, env: "Environment", job: Job, cutover_bin: Sequence[str], head: str) -> dict[str, str]:
    unit = _unit(env, job)
    kind = "Type=simple" if job.key == "bridge" else "Type=oneshot"  # the bridge runs until the change closes
    service = (f"{head}"
               "# Runs as root unless a drop-in says User=: the run is sealed with that user's operator key\n"
               "# (`cutover key`), and env: secret references in params need their variables (EnvironmentFile=).\n"
               "[Unit]\n"
               f"Description={_sd(f'StellaOps cutover {env.name} {job.label}: {job.what}')}\n\n"
               "[Service]\n"
               f"{kind}\n"
               f"WorkingDirectory={_sd(str(root))}\n"
               f"Environment={_sd_word(f'CUTOVER_ROOT={root}')}\n"
               f"ExecStart={' '.join(_sd_word(w, exec_line=True) for w in [*cutover_bin, *job.args])}\n")
    timer = (f"{head}"
             "[Unit]\n"
             f"Description={_sd(f'StellaOps cutover {env.name} {job.label} at {job.planned:%Y-%m-%d %H:%M} UTC')}\n\n"
             "[Timer]\n"
             f"OnCalendar={_on_calendar(job.planned)}\n"
             "AccuracySec=1s\n"
             "Persistent=false\n"
             f"Unit={unit}.service\n\n"
             "[Install]\n"
             "WantedBy=timers.target\n")
    return {f"{unit}.service": service, f"{unit}.timer": timer}


# --- cron ---------------------------------------------------------------------------------

def _cron_fields(when: datetime) -> str:
    """Minute, hour, day of month, month, any weekday (in UTC)."""
    return f"{when.minute} {when.hour} {when.day} {when.month} *"


def _crontab(root: Path, env: "Environment", all_jobs: list[Job], cutover_bin: Sequence[str], head: str) -> str:
    again = ("in prod such a run is refused by the on-time check (`cutover run` refuses a slot far from its hour)"
             if env.timeline.enforced else
             f"{env.name} does not enforce the timeline, so such a run would go ahead")
    lines = [head.rstrip("\n"),
             "# Cron has no year field: each line would fire again on the same date a year later;",
             f"# {again}.",
             "# Remove these lines once the change closes.",
             "# CRON_TZ=UTC: the times are UTC (cronie honours it; elsewhere run this on a host whose clock is UTC).",
             "# Install beside your own entries: (crontab -l 2>/dev/null; cat crontab) | crontab -",
             "CRON_TZ=UTC"]
    log = shlex.quote(f"{root}/executed/{env.name}/schedule.log")
    for job in all_jobs:
        cmd = (f"cd {shlex.quote(str(root))} && mkdir -p {shlex.quote(f'executed/{env.name}')} && "
               f"{shlex.join([*cutover_bin, *job.args])} >> {log} 2>&1")
        cmd = cmd.replace("%", "\\%")  # an unescaped % is a line break to cron
        lines += [f"# {job.label} at {job.planned:%Y-%m-%d %H:%M} UTC: {job.what}",
                  f"{_cron_fields(job.planned)} {cmd}"]
    return "\n".join(lines) + "\n"


# --- kubernetes ---------------------------------------------------------------------------

def _k8s_name(unit: str) -> str:
    """A DNS-1123 label of at most 52 characters (a long one keeps a hash of the whole)."""
    name = re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", unit.lower())).strip("-")
    if len(name) > _K8S_NAME_MAX:
        name = name[:_K8S_NAME_MAX - 9].rstrip("-") + "-" + hashlib.sha256(unit.encode()).hexdigest()[:8]
    return name


def _label_value(text: str) -> str:
    """A label value: letters, digits, ``-_.``, alphanumeric at both ends, at most 63."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", text.replace("+", "plus"))[:63].strip("-_.")


def _cronjob(env: "Environment", job: Job, image: str) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": "stellaops-cutover", "stellaops.io/env": _label_value(env.name),
              "stellaops.io/slot": _label_value(job.label)}
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": _k8s_name(_unit(env, job)), "labels": labels,
                     "annotations": {"stellaops.io/planned": f"{job.planned:%Y-%m-%dT%H:%M:%SZ}",
                                     "stellaops.io/activity": job.what}},
        "spec": {
            "schedule": _cron_fields(job.planned),
            "timeZone": "Etc/UTC",
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 900,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {"spec": {"backoffLimit": 0, "template": {
                "metadata": {"labels": dict(labels)},  # a copy: no YAML anchor
                "spec": {"restartPolicy": "Never", "containers": [{
                    "name": "cutover", "image": image, "command": ["cutover", *job.args],
                    "workingDir": K8S_WORKDIR, "env": [{"name": "CUTOVER_ROOT", "value": K8S_WORKDIR}]}]}}}},
        },
    }


def _kubernetes(env: "Environment", all_jobs: list[Job], image: str, head: str) -> str:
    import yaml

    note = (f"{head}"
            f"# The image holds the project at {K8S_WORKDIR}; mount a persistent volume on its executed/ (the\n"
            "# evidence of every run is written there).  Cron has no year field: each CronJob would fire again a\n"
            "# year later -- delete them once the change closes.\n"
            "# Apply: kubectl apply -n NAMESPACE -f cronjobs.yaml\n")
    docs = [_cronjob(env, job, image) for job in all_jobs]
    return note + yaml.safe_dump_all(docs, explicit_start=True, sort_keys=False, default_flow_style=False, width=1000)


# --- the schedule -------------------------------------------------------------------------

def render_schedule(root: Path, env: "Environment", *, cutover_bin: Sequence[str], image: str = DEFAULT_IMAGE,
                    formats: Iterable[str] = FORMATS) -> dict[str, str]:
    """The schedule of ``env`` in each of ``formats``: relative file name -> text.  Pure: the same
    params, root and program give the same text (no time of writing in it)."""
    wanted = list(dict.fromkeys(formats))
    unknown = [f for f in wanted if f not in FORMATS]
    if unknown:
        raise UsageError(f"unknown schedule format {unknown[0]!r}", hint=f"choose {', '.join(FORMATS)} or all")
    root = Path(root).absolute()
    if any("\n" in part for part in [str(root), *cutover_bin]):
        raise UsageError("a path of the schedule holds a line break", hint="move the project to a plain path")
    all_jobs = jobs(root, env)
    head = (f"# stellaops-cutover {env.name}: T0 {env.t0:%Y-%m-%d %H:%M} UTC, change {env.change_ticket}\n"
            f"# Written by `cutover schedule --env {env.name}` from params/{env.name}.yaml; change T0 there.\n")
    files: dict[str, str] = {}
    if "systemd" in wanted:
        for job in all_jobs:
            files.update(_systemd(root, env, job, cutover_bin, head))
    if "cron" in wanted:
        files["crontab"] = _crontab(root, env, all_jobs, cutover_bin, head)
    if "kubernetes" in wanted:
        files["cronjobs.yaml"] = _kubernetes(env, all_jobs, image, head)
    return files


def _write(path: Path, text: str) -> None:
    """Through a temporary file and a rename; 0644 whatever the umask (schedulers read it)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}", hint="choose another --out") from exc


def write_schedule(out_dir: Path, files: dict[str, str], force: bool = False) -> list[tuple[Path, str]]:
    """Write ``files`` under ``out_dir``: each path with ``written``, ``unchanged`` or ``rewritten``.

    A folder holding one of these files with other text (an older T0, a hand edit) is refused as a
    whole, before anything is written, unless ``force``; nothing is ever deleted (a unit of a slot
    since removed stays: say so to the scheduler yourself)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir} is not a folder", hint="choose another --out")
    states: list[tuple[Path, str]] = []
    for name, text in files.items():
        path = out_dir / name
        if path.is_dir():
            raise UsageError(f"{path} is a folder", hint="choose another --out")
        try:
            old = path.read_text(encoding="utf-8") if path.exists() else None
        except (OSError, UnicodeDecodeError):
            old = ""
        states.append((path, "written" if old is None else "unchanged" if old == text else "rewritten"))
    differ = [p.name for p, state in states if state == "rewritten"]
    if differ and not force:
        more = f" and {len(differ) - 1} more" if len(differ) > 1 else ""
        raise UsageError(f"{out_dir} holds a different schedule: {differ[0]}{more} would change",
                         hint="check what changed (T0?), then add --force to rewrite, or choose another --out")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {out_dir}: {exc.strerror or exc}", hint="choose another --out") from exc
    for (path, state), text in zip(states, files.values()):
        if state != "unchanged":
            _write(path, text)
    return states
