"""The phases: which notebooks each one runs, in order -- data in ``notebooks/phases.yaml``.

Light on purpose: the CLI reads it to start the first notebook's kernel before it loads
anything else.  Adding a notebook to a phase is one line in that file; a notebook that must run
longer than ``timeouts.notebook`` says so in its own metadata (:func:`notebook_deadline`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UsageError

if TYPE_CHECKING:
    from ..config.models import Environment

__all__ = ["PHASES_FILE", "SLOTS_KEY", "find_root", "load_phases", "load_slots", "notebook_deadline", "resolve_phase"]

PHASES_FILE = "notebooks/phases.yaml"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_NOTEBOOK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\.ipynb$")


SLOTS_KEY = "slots"  # phases.yaml: Section 2's activities (T-24h ... T+4h), each the phase that carries it out
_FIX = f"restore it from git (git checkout -- {PHASES_FILE}) or fix it: a mapping of phase: [notebook, ...]"


def _read(root: Path) -> dict[object, object]:
    import yaml

    path = root / PHASES_FILE
    fix = _FIX
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except FileNotFoundError:
        raise UsageError(f"{PHASES_FILE} is missing in {root}", hint=fix) from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UsageError(f"{PHASES_FILE} cannot be read: {first}", hint=fix) from None
    if not isinstance(data, dict) or not data:
        raise UsageError(f"{PHASES_FILE} is not a mapping of phase names to notebook lists", hint=fix)
    return data


def load_phases(root: Path) -> dict[str, list[str]]:
    """Phase name -> notebook file names (under ``notebooks/``), as ``notebooks/phases.yaml`` lists them."""
    fix = _FIX
    phases: dict[str, list[str]] = {}
    for name, notebooks in _read(root).items():
        if name == SLOTS_KEY:
            continue
        if not isinstance(name, str) or not _NAME.match(name):
            raise UsageError(f"{PHASES_FILE}: phase name {name!r} is not a plain name", hint=fix)
        if not isinstance(notebooks, list) or not notebooks or \
                not all(isinstance(nb, str) and _NOTEBOOK.match(nb) for nb in notebooks):
            raise UsageError(f"{PHASES_FILE}: phase {name} must list notebook file names (NN_name.ipynb, "
                             f"no folders)", hint=fix)
        phases[name] = list(notebooks)
    if "cutover" in phases and "rollback" not in phases:
        raise UsageError(f"{PHASES_FILE}: phase cutover needs a rollback phase (a failed smoke test rolls back)",
                         hint=fix)
    return phases


def load_slots(root: Path) -> dict[str, str]:
    """Section 2's activity label (``T-24h`` ... ``T+4h``) -> the phase that carries it out at
    T0 + that offset (``slots:`` in ``notebooks/phases.yaml``; ``cutover schedule`` writes one
    timer per slot)."""
    from ..evidence.timeline import ACTIVITIES

    phases, labels = load_phases(root), [a.label for a in ACTIVITIES]
    raw = _read(root).get(SLOTS_KEY) or {}
    fix = f"{PHASES_FILE}: {SLOTS_KEY} maps each of {', '.join(labels)} to a phase"
    if not isinstance(raw, dict):
        raise UsageError(f"{PHASES_FILE}: {SLOTS_KEY} is not a mapping of slot: phase", hint=fix)
    slots: dict[str, str] = {}
    for label, phase in raw.items():
        if label not in labels:
            raise UsageError(f"{PHASES_FILE}: {label!r} under {SLOTS_KEY} is not a Section 2 activity", hint=fix)
        if phase not in phases:
            raise UsageError(f"{PHASES_FILE}: slot {label} names phase {phase!r}, which it does not list", hint=fix)
        slots[str(label)] = str(phase)
    return {label: slots[label] for label in labels if label in slots}  # in Section 2's order


def resolve_phase(root: Path, name: str) -> str:
    """A phase by its name or by its slot (``t-12h``, ``T0``, ``t+45m``: any case)."""
    phases = load_phases(root)
    if name in phases:
        return name
    by_slot = {label.lower(): phase for label, phase in load_slots(root).items()}
    if name.lower() in by_slot:
        return by_slot[name.lower()]
    raise UsageError(f"unknown phase {name!r}",
                     hint=f"choose one of: {', '.join(phases)}, or a slot: {', '.join(load_slots(root))} "
                          f"(notebooks/phases.yaml)")


def find_root(start: Path | None = None) -> Path:
    """The project root: ``$CUTOVER_ROOT``, or the nearest folder above ``start`` with ``params/``."""
    env_root = os.environ.get("CUTOVER_ROOT")
    if env_root:
        return Path(env_root).resolve()
    cur = (start or Path.cwd()).resolve()
    for p in (cur, *cur.parents):
        if (p / "params").is_dir() and (p / "notebooks").is_dir():
            return p
    return cur


def notebook_deadline(env: "Environment", notebook: Path) -> float:
    """A notebook's whole-run deadline in seconds: ``timeouts.notebook``, plus each duration its
    metadata names under ``cutover.deadline_adds`` -- 09_post_cutover names ``monitoring.duration``,
    so Section 7's 4 h of monitoring is never cut short by a 2 h deadline."""
    import json
    from datetime import timedelta

    from ..config.template import lookup

    seconds = env.timeouts.notebook.total_seconds()
    try:
        meta = json.loads(notebook.read_text(encoding="utf-8")).get("metadata", {}).get("cutover", {})
    except (OSError, ValueError, AttributeError):
        return seconds
    adds = meta.get("deadline_adds", []) if isinstance(meta, dict) else []
    for key in adds if isinstance(adds, list) else [adds]:
        try:
            value = lookup(env, str(key))
        except KeyError:
            value = None
        if not isinstance(value, timedelta):
            raise UsageError(f"notebooks/{notebook.name}: metadata cutover.deadline_adds names {key!r}, which is not a "
                             "duration in params", hint="name a duration key, e.g. monitoring.duration")
        seconds += value.total_seconds()
    return seconds
