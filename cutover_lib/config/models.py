"""Environment parameters as pydantic models: one class per section of ``params/<env>.yaml`` (the
duration and UTC time types are :mod:`.durations`).  Loading (``extends``, ``-p``) is :mod:`.params`."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field, field_validator, model_validator

from .durations import Duration, UtcTime, format_duration, parse_duration
from .secrets import SecretRef

__all__ = ["ComposeDeploy", "ComposeNode", "Environment", "HelmDeploy", "SecretStore", "format_duration",
           "parse_duration"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Services(_Model):
    """Base URL of every Stella Ops service the runbook talks to."""

    authority: str
    scanner: str
    signer: str
    attestor: str
    notify: str
    web: str
    runtime: str

    @field_validator("*")
    @classmethod
    def _url(cls, v: str) -> str:
        return base_url(v)


def base_url(v: str) -> str:
    """A service's base URL, without a trailing slash and without credentials in it."""
    if re.match(r"^[a-z]+://[^/\s]*@", v, re.I):  # (never echoed: the part before @ may be a password)
        raise ValueError("a service URL must not hold credentials (user:password@); give them as secret "
                         "references under credentials.*")
    if not re.match(r"^https?://[^/\s]+", v):
        raise ValueError(f'expected a base URL like https://scanner.example, got "{v}"')
    return v.rstrip("/")


class ComposeNode(_Model):
    name: str
    docker_host: str

    @field_validator("docker_host")
    @classmethod
    def _host(cls, v: str) -> str:
        if not re.match(r"^(unix|ssh|tcp)://", v):
            raise ValueError(f'expected a DOCKER_HOST like unix:///var/run/docker.sock or ssh://user@host, got "{v}"')
        return v


class ComposeRelease(_Model):
    file: str
    env_file: str


class ComposeDeploy(_Model):
    project_dir: str = "."
    file: str
    env_file: str
    nodes: list[ComposeNode] = Field(min_length=1)
    services: list[str] = Field(default_factory=list)
    network: str = "stellaops_frontdoor"
    parallelism: int = Field(2, ge=1, le=32)
    health_timeout: Duration = timedelta(minutes=5)
    previous: ComposeRelease


class HelmDeploy(_Model):
    release: str = "stellaops"
    chart: str = "deploy/helm/stellaops"
    values: str
    namespace: str = "stellaops"
    timeout: Duration = timedelta(minutes=15)
    watch: Duration = timedelta(seconds=30)  # how long 4.3 watches `kubectl get pods --watch`
    secrets_plugin: bool = False
    kube_context: str | None = None
    deployments: list[str] = Field(default_factory=list)
    stage_secrets: str | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def kube_args(self) -> list[str]:
        """``--kube-context C`` for helm when params name a context, else nothing (cells: ``{helm.kube_args}``)."""
        return ["--kube-context", self.kube_context] if self.kube_context else []

    @computed_field  # type: ignore[prop-decorator]
    @property
    def kubectl_args(self) -> list[str]:
        """``--context C`` for kubectl when params name a context, else nothing."""
        return ["--context", self.kube_context] if self.kube_context else []


class Deploy(_Model):
    """``mode``: ``compose`` or ``helm`` (the runbook's two paths, cells of the notebooks), or a
    deploy mode a plug-in adds (the lab's ``lab``), whose own settings live under ``deploy.<mode>``."""

    model_config = ConfigDict(extra="allow", frozen=True)

    mode: str
    compose: ComposeDeploy | None = None
    helm: HelmDeploy | None = None
    profiles: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _mode_has_section(self) -> "Deploy":
        extra = self.model_extra or {}
        if self.mode in ("compose", "helm") and not extra:
            plugins: list[str] = []  # (no plug-in asked for: the entry points are not even read)
        else:
            from ..adapters.plugins import names

            plugins = names("deploy")
        for key, value in extra.items():
            if key not in plugins:
                raise ValueError(f"deploy.{key}: unknown key (remove it or check its spelling; a plug-in deploy "
                                 f"mode's settings need the plug-in installed)")
            if not isinstance(value, dict):
                raise ValueError(f"deploy.{key}: expected a mapping of the {key} deploy mode's settings")
        if self.mode == "compose" and self.compose is None:
            raise ValueError("mode is compose but deploy.compose is missing")
        if self.mode == "helm" and self.helm is None:
            raise ValueError("mode is helm but deploy.helm is missing")
        if self.mode not in ("compose", "helm") and self.mode not in plugins:
            raise ValueError(f"deploy.mode {self.mode!r} is not compose, helm or an installed plug-in's deploy mode "
                             f"(installed: {', '.join(plugins) or 'none'})")
        return self

    def settings(self, mode: str | None = None) -> dict[str, Any]:
        """A plug-in deploy mode's own settings (``deploy.<mode>``), as a plain mapping."""
        value = (self.model_extra or {}).get(mode or self.mode)
        return dict(value) if isinstance(value, dict) else {}


class SecretStore(_Model):
    """A secret store and the keys it must hold.  ``k8s``: a Kubernetes secret of that name;
    ``dir``: a folder with one file per key (a mounted secret volume, and the lab's store)."""

    backend: Literal["k8s", "dir"] = "k8s"
    namespace: str = "stellaops"
    path: str | None = None
    keys: list[str] = Field(min_length=1)


class MongoBackup(_Model):
    uri: SecretRef
    out_dir: str = "/backups"


class ObjectStoreBackup(_Model):
    source: str = "minio/stellaops"
    target_prefix: str = "minio-backup/stellaops-"


class Backup(_Model):
    """``tools``: the runbook's mongodump / mc mirror (cells of the notebooks); another mode is a
    plug-in's (the lab's stand-in stores)."""

    mode: str = "tools"
    #: Section 6 restores run only when asked (tools mode) -- the lab checks consistency itself
    restore_on_rollback: bool = False
    mongo: MongoBackup
    object_store: ObjectStoreBackup

    @field_validator("mode")
    @classmethod
    def _known_mode(cls, value: str) -> str:
        from ..adapters.plugins import names

        if value != "tools" and value not in names("backup"):
            raise ValueError(f"{value!r} is not tools or an installed plug-in's backup mode "
                             f"(installed: {', '.join(names('backup')) or 'none'})")
        return value


class Gate(_Model):
    """A gate of the approval matrix.  ``after``: the gate approves what one run showed -- an
    approval names that run (``cutover approve --run``) and counts only when recorded after this
    step passed in it (post-smoke: ``5.decision``, the smoke results)."""

    title: str
    roles: list[str] = Field(min_length=1)
    record: str
    section: str
    after: str | None = None


class Approvals(_Model):
    gates: dict[str, Gate]
    waivable: bool = False
    #: who may approve for a role (empty: anyone may; the record names them either way)
    approvers: dict[str, list[str]] = Field(default_factory=dict)


class Bridge(_Model):
    webhook: SecretRef | None = None
    channel: str = "launch-bridge"
    username: str = "stellaops-cutover"
    heartbeat: Duration = timedelta(minutes=10)
    #: the bridge call of Section 1 (its URL or dial-in), posted with the roster at T-30m
    call: str | None = Field(None, min_length=1)
    timeout: Duration = timedelta(seconds=5)
    retries: int = Field(3, ge=0, le=10)


class Slo(_Model):
    scan: Duration = timedelta(minutes=5)
    ui: Duration = timedelta(seconds=2)
    smoke_deadline: Duration = timedelta(minutes=45)


class Timeouts(_Model):
    http: Duration = timedelta(seconds=10)
    command: Duration = timedelta(minutes=10)
    notebook: Duration = timedelta(hours=2)
    health: Duration = timedelta(minutes=2)


class Role(_Model):
    role: str
    primary: str
    backup: str
    contact: str


class Tools(_Model):
    """The runbook's CLIs run as commands whose program is set here (default: the runbook's names).

    ``env`` is what the Stella Ops CLIs (the programs of ``env_for``) get in their environment:
    each value is a template over params (``{services.scanner}``) or a secret reference
    (``env:NAME``, ``file:PATH``), resolved at use and never shown.  ``path`` folders are appended to ``PATH`` for the runbook's commands (a lab
    puts its stand-in executables there; a program earlier on ``PATH`` still wins).
    """

    stellaops_cli: str = "stellaops-cli"
    profile: str | None = None  # stellaops-cli --profile; default: the environment's tier
    env: dict[str, str] = Field(default_factory=dict)
    #: the programs ``env`` goes to (and ``stellaops_cli``); helm, kubectl, docker never get it
    env_for: list[str] = Field(default_factory=lambda: ["stellaops-cli", "dotnet"])
    #: T-12h: the deploy tree's profile validation script, and whether a profile it skips (its tool
    #: not installed here) may pass -- never in prod: every profile must be validated
    validate_profiles: str = "deploy/tools/validate-profiles.sh"
    validate_profiles_may_skip: bool = False
    path: list[str] = Field(default_factory=list)
    #: what one program gets in its environment wherever it runs (a cell, or a check that lists what
    #: a step made): templates or secret references, e.g. ``mc: {MC_HOST_minio: env:MC_HOST_MINIO}``
    program_env: dict[str, dict[str, str]] = Field(default_factory=dict)


class Trust(_Model):
    """What the smoke tests trust: the signer's public keys (PEM files) a DSSE must verify against;
    and whose seal on a run of this environment ``cutover verify`` accepts: ``run_keys`` (PEM
    files or folders of them; none: the verifying operator's own key)."""

    signer_keys: list[str] = Field(default_factory=list)
    run_keys: list[str] = Field(default_factory=list)


class Rehearsal(_Model):
    """"Rehearsal must complete without manual interventions before proceeding to production": a
    cutover here needs a passed ``rehearsal`` run of the same release in ``env`` (sealed, untouched,
    not resumed, no waiver, no accepted params change) that ended within ``within``."""

    env: str | None = None
    within: Duration = timedelta(days=14)


class OfflineKit(_Model):
    """T-24h: the offline kit build (``build``, DEVOPS-OFFLINE-18-005) as it publishes itself: a
    ``manifest`` (JSON: ``kit``, ``release``, ``images`` [{``repository``, ``tag``, ``digest``}],
    ``bundles`` [{``path`` (next to the manifest), ``sha256``}]) and the site ``registry`` (its API
    URL, ``https://registry.site:5000``) that must serve every listed image with that digest."""

    build: str = "DEVOPS-OFFLINE-18-005"
    manifest: str | None = None
    registry: str | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def folder(self) -> str | None:
        """The manifest's folder, where its bundle paths start (cells: ``{offline_kit.folder}``)."""
        return self.manifest.rsplit("/", 1)[0] if self.manifest and "/" in self.manifest else \
            ("." if self.manifest else None)


from .models_checks import Audit, Monitoring, Smoke, Ticket, Timeline  # noqa: E402 - they build on _Model above


class Environment(_Model):
    """One environment of the runbook (``params/<name>.yaml``)."""

    name: str
    description: str = ""
    release: str
    previous_release: str
    tier: Literal["local", "dev", "stage", "prod", "airgap", "mirror"]
    change_ticket: str
    incident_ticket: str | None = None
    t0: UtcTime
    services: Services
    deploy: Deploy
    secret_stores: dict[str, SecretStore] = Field(default_factory=dict)
    credentials: dict[str, SecretRef] = Field(default_factory=dict)
    backup: Backup
    approvals: Approvals
    bridge: Bridge = Bridge()
    slo: Slo = Slo()
    timeouts: Timeouts = Timeouts()
    monitoring: Monitoring = Monitoring()
    ticket: Ticket = Ticket()
    timeline: Timeline = Timeline()
    audit: Audit = Audit()
    tools: Tools = Tools()
    trust: Trust = Trust()
    smoke: Smoke = Smoke()
    rehearsal: Rehearsal = Rehearsal()
    roles: list[Role] = Field(default_factory=list)
    offline_kit: OfflineKit = OfflineKit()
    #: files this environment's params name that the site provides outside this repository (the
    #: offline kit as delivered, the pinned signer key): not required in the project folder;
    #: pre-flight (4.1) checks each is there on the host that runs the cutover
    site_files: list[str] = Field(default_factory=list)
    samples: dict[str, str] = Field(default_factory=lambda: {
        "sbom": "samples/sbom/demo.json",
        "dsse": "samples/dsse/demo.json",
        "runtime_event": "samples/runtime/zastava-observer-event.json",
    })
    tls_verify: bool = True

    @model_validator(mode="before")
    @classmethod
    def _cli_profile(cls, data: Any) -> Any:
        """``tools.profile`` (stellaops-cli --profile) is the tier unless params say otherwise."""
        if isinstance(data, dict) and isinstance(data.get("tier"), str):
            tools = data.get("tools")
            if tools is None:
                data = {**data, "tools": {"profile": data["tier"]}}
            elif isinstance(tools, dict) and tools.get("profile") is None:
                data = {**data, "tools": {**tools, "profile": data["tier"]}}
        return data

    @model_validator(mode="before")
    @classmethod
    def _prod_on_time(cls, data: Any) -> Any:
        """In prod the timeline is enforced: ``timeline.enforce: false`` (or ``-p``) cannot turn it off."""
        if isinstance(data, dict) and data.get("tier") == "prod":
            timeline = data.get("timeline") if isinstance(data.get("timeline"), dict) else {}
            if timeline.get("enforce") is False:
                raise ValueError("timeline.enforce cannot be false in prod: each slot runs at its hour "
                                 "(a run off its hour says --at-any-time, recorded)")
            if "timeline" not in data or isinstance(data.get("timeline"), dict):
                data = {**data, "timeline": {**timeline, "enforce": True}}
        return data

    @property
    def is_prod(self) -> bool:
        return self.tier == "prod"


