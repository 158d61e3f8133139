"""Environment parameters as msgspec structs: one class per section of ``params/<env>.yaml`` (the
duration and UTC time types are :mod:`.durations`; building them, every problem named, is
:mod:`.schema`).  Loading (``extends``, ``-p``) is :mod:`.params`."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from msgspec import Meta, Struct, field

from .durations import Duration, UtcTime, format_duration, parse_duration
from .schema import BaseUrl, Problem
from .secrets import SecretRef

__all__ = ["ComposeDeploy", "ComposeNode", "Environment", "HelmDeploy", "SecretStore", "format_duration",
           "parse_duration"]


class _Model(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A params section: unknown keys are errors, values never change after loading.  Each section
    says ``frozen=True, kw_only=True`` again: msgspec applies ``kw_only`` to the fields a class
    defines itself, and type checkers read ``frozen`` per class."""


#: a list that must hold at least one item
NonEmpty = Annotated[list[str], Meta(min_length=1)]


class Services(_Model, frozen=True, kw_only=True):
    """Base URL of every Stella Ops service the runbook talks to."""

    authority: BaseUrl
    scanner: BaseUrl
    signer: BaseUrl
    attestor: BaseUrl
    notify: BaseUrl
    web: BaseUrl
    runtime: BaseUrl


class DockerHost(str):
    """Where a compose node's Docker engine answers: ``unix://``, ``ssh://`` or ``tcp://``."""

    @classmethod
    def parse(cls, value: Any) -> "DockerHost":
        if not isinstance(value, str) or not re.match(r"^(unix|ssh|tcp)://", value):
            # (a password in it is never echoed: ssh://user:PASSWORD@host)
            shown = re.sub(r"(://[^/@\s:]*):[^/@\s]*@", r"\1:***@", str(value))
            raise ValueError("expected a DOCKER_HOST like unix:///var/run/docker.sock or ssh://user@host, "
                             f'got "{shown}"')
        return cls(value)


class ComposeNode(_Model, frozen=True, kw_only=True):
    name: str
    docker_host: DockerHost


class ComposeRelease(_Model, frozen=True, kw_only=True):
    file: str
    env_file: str


class ComposeDeploy(_Model, frozen=True, kw_only=True):
    project_dir: str = "."
    file: str
    env_file: str
    nodes: Annotated[list[ComposeNode], Meta(min_length=1)]
    services: list[str] = []
    network: str = "stellaops_frontdoor"
    parallelism: Annotated[int, Meta(ge=1, le=32)] = 2
    health_timeout: Duration = Duration(minutes=5)
    previous: ComposeRelease


class HelmDeploy(_Model, frozen=True, kw_only=True):
    release: str = "stellaops"
    chart: str = "deploy/helm/stellaops"
    values: str
    namespace: str = "stellaops"
    timeout: Duration = Duration(minutes=15)
    watch: Duration = Duration(seconds=30)  # how long 4.3 watches `kubectl get pods --watch`
    secrets_plugin: bool = False
    kube_context: str | None = None
    deployments: list[str] = []
    stage_secrets: str | None = None

    @property
    def kube_args(self) -> list[str]:
        """``--kube-context C`` for helm when params name a context, else nothing (cells: ``{helm.kube_args}``)."""
        return ["--kube-context", self.kube_context] if self.kube_context else []

    @property
    def kubectl_args(self) -> list[str]:
        """``--context C`` for kubectl when params name a context, else nothing."""
        return ["--context", self.kube_context] if self.kube_context else []


class Deploy(_Model, frozen=True, kw_only=True):
    """``mode``: ``compose`` or ``helm`` (the runbook's two paths, cells of the notebooks), or a
    deploy mode a plug-in adds (the lab's ``lab``), whose own settings live under ``deploy.<mode>``."""

    mode: str
    compose: ComposeDeploy | None = None
    helm: HelmDeploy | None = None
    profiles: dict[str, str] = {}
    #: each plug-in deploy mode's settings, written ``deploy.<mode>`` in params (:meth:`prepare`
    #: moves them here, :meth:`__dump__` back)
    modes: dict[str, dict[str, Any]] = {}

    @classmethod
    def prepare(cls, data: dict[str, Any]) -> tuple[dict[str, Any], list[Problem]]:
        """``deploy`` as written, its plug-in modes' settings under ``modes``; the keys that are
        neither, and what is wrong in a plug-in's settings when the plug-in types them (its class's
        ``settings``: a msgspec struct), so that they fail here and not half-way through a run."""
        extra = {k: v for k, v in data.items() if k not in cls.__struct_fields__ or k == "modes"}
        if not extra:
            return data, []
        from ..adapters.plugins import load, names
        from .schema import check

        plugins = names("deploy")
        found: list[Problem] = []
        modes: dict[str, Any] = {}
        for key, value in extra.items():
            if key not in plugins:
                found.append(((key,), "unknown key (remove it or check its spelling; a plug-in deploy mode's "
                                      "settings need the plug-in installed)"))
            elif not isinstance(value, dict):
                found.append(((key,), f"expected a mapping of the {key} deploy mode's settings"))
            else:
                modes[key] = value
                settings = getattr(load("deploy", key), "settings", None)
                if settings is not None:
                    found += [((key, *where), what) for where, what in check(value, settings)[1]]
        return {**{k: v for k, v in data.items() if k not in extra}, "modes": modes}, found

    def __post_init__(self) -> None:
        if self.mode == "compose" and self.compose is None:
            raise ValueError("mode is compose but deploy.compose is missing")
        if self.mode == "helm" and self.helm is None:
            raise ValueError("mode is helm but deploy.helm is missing")
        if self.mode not in ("compose", "helm"):  # (compose, helm: the entry points are not even read)
            from ..adapters.plugins import names

            if self.mode not in (plugins := names("deploy")):
                raise ValueError(f"deploy.mode {self.mode!r} is not compose, helm or an installed plug-in's deploy "
                                 f"mode (installed: {', '.join(plugins) or 'none'})")

    def __dump__(self, out: dict[str, Any]) -> dict[str, Any]:
        return {**{k: v for k, v in out.items() if k != "modes"}, **out["modes"]}

    def settings(self, mode: str | None = None) -> dict[str, Any]:
        """A plug-in deploy mode's own settings (``deploy.<mode>``), as a plain mapping."""
        return dict(self.modes.get(mode or self.mode) or {})


class SecretStore(_Model, frozen=True, kw_only=True):
    """A secret store and the keys it must hold.  ``k8s``: a Kubernetes secret of that name;
    ``dir``: a folder with one file per key (a mounted secret volume, and the lab's store)."""

    backend: Literal["k8s", "dir"] = "k8s"
    namespace: str = "stellaops"
    path: str | None = None
    keys: NonEmpty


class MongoBackup(_Model, frozen=True, kw_only=True):
    uri: SecretRef
    out_dir: str = "/backups"


class ObjectStoreBackup(_Model, frozen=True, kw_only=True):
    source: str = "minio/stellaops"
    target_prefix: str = "minio-backup/stellaops-"


class Backup(_Model, frozen=True, kw_only=True):
    """``tools``: the runbook's mongodump / mc mirror (cells of the notebooks); another mode is a
    plug-in's (the lab's stand-in stores)."""

    mode: str = "tools"
    #: Section 6 restores run only when asked (tools mode) -- the lab checks consistency itself
    restore_on_rollback: bool = False
    mongo: MongoBackup
    object_store: ObjectStoreBackup

    def __post_init__(self) -> None:
        if self.mode != "tools":
            from ..adapters.plugins import names

            if self.mode not in (plugins := names("backup")):
                raise ValueError(f"mode {self.mode!r} is not tools or an installed plug-in's backup mode "
                                 f"(installed: {', '.join(plugins) or 'none'})")


class Gate(_Model, frozen=True, kw_only=True):
    """A gate of the approval matrix.  ``after``: the gate approves what one run showed -- an
    approval names that run (``cutover approve --run``) and counts only when recorded after this
    step passed in it (post-smoke: ``5.decision``, the smoke results)."""

    title: str
    roles: NonEmpty
    record: str
    section: str
    after: str | None = None


class Approvals(_Model, frozen=True, kw_only=True):
    gates: dict[str, Gate]
    waivable: bool = False
    #: who may approve for a role (empty: anyone may; the record names them either way)
    approvers: dict[str, list[str]] = {}


class Bridge(_Model, frozen=True, kw_only=True):
    webhook: SecretRef | None = None
    channel: str = "launch-bridge"
    username: str = "stellaops-cutover"
    heartbeat: Duration = Duration(minutes=10)
    #: the bridge call of Section 1 (its URL or dial-in), posted with the roster at T-30m
    call: Annotated[str, Meta(min_length=1)] | None = None
    timeout: Duration = Duration(seconds=5)
    retries: Annotated[int, Meta(ge=0, le=10)] = 3


class Slo(_Model, frozen=True, kw_only=True):
    scan: Duration = Duration(minutes=5)
    ui: Duration = Duration(seconds=2)
    smoke_deadline: Duration = Duration(minutes=45)


class Timeouts(_Model, frozen=True, kw_only=True):
    http: Duration = Duration(seconds=10)
    command: Duration = Duration(minutes=10)
    notebook: Duration = Duration(hours=2)
    health: Duration = Duration(minutes=2)


class Role(_Model, frozen=True, kw_only=True):
    role: str
    primary: str
    backup: str
    contact: str


class Tools(_Model, frozen=True, kw_only=True):
    """The runbook's CLIs run as commands whose program is set here (default: the runbook's names).

    ``env`` is what the Stella Ops CLIs (the programs of ``env_for``) get in their environment:
    each value is a template over params (``{services.scanner}``) or a secret reference
    (``env:NAME``, ``file:PATH``), resolved at use and never shown.  ``path`` folders are appended to ``PATH`` for the runbook's commands (a lab
    puts its stand-in executables there; a program earlier on ``PATH`` still wins).
    """

    stellaops_cli: str = "stellaops-cli"
    profile: str | None = None  # stellaops-cli --profile; default: the environment's tier
    env: dict[str, str] = {}
    #: the programs ``env`` goes to (and ``stellaops_cli``); helm, kubectl, docker never get it
    env_for: list[str] = field(default_factory=lambda: ["stellaops-cli", "dotnet"])
    #: T-12h: the deploy tree's profile validation script, and whether a profile it skips (its tool
    #: not installed here) may pass -- never in prod: every profile must be validated
    validate_profiles: str = "deploy/tools/validate-profiles.sh"
    validate_profiles_may_skip: bool = False
    path: list[str] = []
    #: what one program gets in its environment wherever it runs (a cell, or a check that lists what
    #: a step made): templates or secret references, e.g. ``mc: {MC_HOST_minio: env:MC_HOST_MINIO}``
    program_env: dict[str, dict[str, str]] = {}


class Trust(_Model, frozen=True, kw_only=True):
    """What the smoke tests trust: the signer's public keys (PEM files) a DSSE must verify against;
    and whose seal on a run of this environment ``cutover verify`` accepts: ``run_keys`` (PEM
    files or folders of them; none: the verifying operator's own key)."""

    signer_keys: list[str] = []
    run_keys: list[str] = []


class Rehearsal(_Model, frozen=True, kw_only=True):
    """"Rehearsal must complete without manual interventions before proceeding to production": a
    cutover here needs a passed ``rehearsal`` run of the same release in ``env`` (sealed, untouched,
    not resumed, no waiver, no accepted params change) that ended within ``within``."""

    env: str | None = None
    within: Duration = Duration(days=14)


class OfflineKit(_Model, frozen=True, kw_only=True):
    """T-24h: the offline kit build (``build``, DEVOPS-OFFLINE-18-005) as it publishes itself: a
    ``manifest`` (JSON: ``kit``, ``release``, ``images`` [{``repository``, ``tag``, ``digest``}],
    ``bundles`` [{``path`` (next to the manifest), ``sha256``}]) and the site ``registry`` (its API
    URL, ``https://registry.site:5000``) that must serve every listed image with that digest."""

    build: str = "DEVOPS-OFFLINE-18-005"
    manifest: str | None = None
    registry: str | None = None

    @property
    def folder(self) -> str | None:
        """The manifest's folder, where its bundle paths start (cells: ``{offline_kit.folder}``)."""
        return self.manifest.rsplit("/", 1)[0] if self.manifest and "/" in self.manifest else \
            ("." if self.manifest else None)


from .models_checks import Audit, Monitoring, Smoke, Ticket, Timeline  # noqa: E402 - they build on _Model above


class Environment(_Model, frozen=True, kw_only=True):
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
    secret_stores: dict[str, SecretStore] = {}
    credentials: dict[str, SecretRef] = {}
    backup: Backup
    approvals: Approvals
    bridge: Bridge = field(default_factory=Bridge)
    slo: Slo = field(default_factory=Slo)
    timeouts: Timeouts = field(default_factory=Timeouts)
    monitoring: Monitoring = field(default_factory=Monitoring)
    ticket: Ticket = field(default_factory=Ticket)
    timeline: Timeline = field(default_factory=Timeline)
    audit: Audit = field(default_factory=Audit)
    tools: Tools = field(default_factory=Tools)
    trust: Trust = field(default_factory=Trust)
    smoke: Smoke = field(default_factory=Smoke)
    rehearsal: Rehearsal = field(default_factory=Rehearsal)
    roles: list[Role] = []
    offline_kit: OfflineKit = field(default_factory=OfflineKit)
    #: files this environment's params name that the site provides outside this repository (the
    #: offline kit as delivered, the pinned signer key): not required in the project folder;
    #: pre-flight (4.1) checks each is there on the host that runs the cutover
    site_files: list[str] = []
    samples: dict[str, str] = field(default_factory=lambda: {
        "sbom": "samples/sbom/demo.json",
        "dsse": "samples/dsse/demo.json",
        "runtime_event": "samples/runtime/zastava-observer-event.json",
    })
    tls_verify: bool = True

    @classmethod
    def prepare(cls, data: dict[str, Any]) -> tuple[dict[str, Any], list[Problem]]:
        """The params as written, made ready to build: ``tools.profile`` (stellaops-cli --profile) is
        the tier unless params say otherwise; in prod the timeline is enforced (``timeline.enforce:
        false``, or ``-p``, cannot turn it off); plug-in deploy modes' settings.  The problems found."""
        found: list[Problem] = []
        tier = data.get("tier")
        tools = data.get("tools")
        if isinstance(tier, str) and (tools is None or (isinstance(tools, dict) and tools.get("profile") is None)):
            data = {**data, "tools": {**(tools or {}), "profile": tier}}
        timeline = data.get("timeline")
        if tier == "prod" and (timeline is None or isinstance(timeline, dict)):
            if (timeline or {}).get("enforce") is False:
                found.append((("timeline", "enforce"), "cannot be false in prod: each slot runs at its hour (a run "
                                                       "off its hour says --at-any-time, recorded)"))
            data = {**data, "timeline": {**(timeline or {}), "enforce": True}}
        if isinstance(data.get("deploy"), dict):
            deploy, inside = Deploy.prepare(data["deploy"])
            data = {**data, "deploy": deploy}
            found += [(("deploy", *where), message) for where, message in inside]
        return data, found

    @property
    def is_prod(self) -> bool:
        return self.tier == "prod"


