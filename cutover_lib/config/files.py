"""Every file an environment's params name is there before anything runs.

The compose files and env files (the release's and the previous one's), the chart and its values,
every deployment profile T-12h validates, the offline kit manifest, the pinned signer keys, the
keys trusted to seal runs, the samples the smoke tests submit and the profile validation script:
each must exist in the project folder, or be declared in ``site_files`` (the site provides it outside this repository; pre-flight
checks it on the host that runs the cutover).  ``cutover params check`` and ``cutover plan``/``run``
fail with exit 2 naming the key and the path otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from ..errors import ParamsError
from .models import Environment
from .template import render_text

__all__ = ["advisories", "missing_files", "named_files", "require_files"]


def named_files(env: Environment) -> Iterator[tuple[str, str, str]]:
    """``(params key, path template, folder it is relative to)`` for every file the params name;
    the folder is ``"."`` (the project) or the compose project folder."""
    compose, helm = env.deploy.compose, env.deploy.helm
    if compose is not None:
        for key, value in (("file", compose.file), ("env_file", compose.env_file),
                           ("previous.file", compose.previous.file), ("previous.env_file", compose.previous.env_file)):
            yield f"deploy.compose.{key}", value, compose.project_dir
    if helm is not None:
        yield "deploy.helm.chart", helm.chart, "."
        yield "deploy.helm.values", helm.values, "."
        if helm.stage_secrets:
            yield "deploy.helm.stage_secrets", helm.stage_secrets, "."
    for name, path in env.deploy.profiles.items():
        yield f"deploy.profiles.{name}", path, "."
    if env.offline_kit.manifest:
        yield "offline_kit.manifest", env.offline_kit.manifest, "."
    for i, key in enumerate(env.trust.signer_keys):
        if "://" not in key and not key.startswith("{services."):  # a URL serves the key: nothing on disk
            yield f"trust.signer_keys[{i}]", key, "."
    for i, key in enumerate(env.trust.run_keys):
        yield f"trust.run_keys[{i}]", key, "."
    for name, path in env.samples.items():
        yield f"samples.{name}", path, "."
    if "/" in env.tools.validate_profiles:  # (a bare name is a program on PATH)
        yield "tools.validate_profiles", env.tools.validate_profiles, "."


def missing_files(env: Environment, root: Path, label: str) -> list[str]:
    """One problem line per named file that is neither in the project nor a declared site file."""
    site = {render_text(f, env) for f in env.site_files}
    problems: list[str] = []
    for key, template, base in named_files(env):
        try:
            path = render_text(template, env)
        except ParamsError as exc:
            problems.extend(f"{label}: {key}: {p}" for p in exc.problems)
            continue
        if path in site:
            continue
        where = (root / base / path) if not Path(path).is_absolute() else Path(path)
        if not where.exists():
            shown = where.relative_to(root) if where.is_relative_to(root) else where
            problems.append(f"{label}: {key}: {shown} does not exist (add it to the project, or list it in "
                            f"site_files if the site provides it)")
    return problems


def require_files(env: Environment, root: Path) -> None:
    """Raise :class:`ParamsError` (exit 2) naming every missing file of ``env``."""
    problems = missing_files(env, root, f"params/{env.name}.yaml")
    if problems:
        raise ParamsError(problems, hint=f"then run: cutover params check --env {env.name}")


def advisories(env: Environment, base: Path, now: datetime | None = None) -> list[str]:
    """What would fail later although the params are valid: a secret reference this shell cannot
    resolve (an unset variable, a missing file; nothing is read) and a T0 in the past or months
    away.  ``cutover params check`` prints them as warnings."""
    import os

    from .params import flatten

    found = []
    for key, value in flatten(env):
        scheme, _, rest = value.partition(":")
        if scheme == "env" and rest and rest.replace("_", "").isalnum() and rest not in os.environ:
            found.append(f"{key}: {value} is not set in this shell (export {rest}=... before the run)")
        elif scheme == "file" and rest and not (base / Path(rest).expanduser()).exists():
            found.append(f"{key}: {value} does not exist here (the site's secret file)")
    now = now or datetime.now(UTC)
    days = -(now - env.t0).total_seconds() / 86400
    if days < -1:
        found.append(f"t0: {env.t0:%Y-%m-%dT%H:%MZ} is {-days:.0f} days in the past (set this change's T0; "
                     f"a rehearsal: -p t0=...)")
    elif days > 60:
        found.append(f"t0: {env.t0:%Y-%m-%dT%H:%MZ} is {days:.0f} days away (is it this change's T0?)")
    return found
