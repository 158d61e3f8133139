"""The params models of where the runbook's checks look and where its records go: the smoke
tests' Web UI (``smoke.*``), Section 7's monitoring (``monitoring.*``) and audit trails
(``audit.*``), the change / incident tickets (``ticket.*``), and Section 2 on time
(``timeline.*``).  Part of :mod:`.models`."""

from __future__ import annotations

from typing import Literal

from msgspec import field

from .durations import Duration
from .models import _Model
from .schema import BaseUrl
from .secrets import SecretRef

__all__ = ["Audit", "Monitoring", "Smoke", "Ticket", "Timeline", "WebLogin"]


class WebLogin(_Model, frozen=True, kw_only=True):
    """The Web UI's login form ("Manual login"), as a browser fills it in: the form's ``path``, the
    smoke account's ``user`` and ``password`` (a secret reference, resolved at use), and the CSS
    selectors of the two fields and the submit button."""

    path: str = "/login"
    user: str | None = None
    password: SecretRef | None = None
    user_field: str = 'input[name="username"]'
    password_field: str = 'input[type="password"]'
    submit: str = '[type="submit"]'


class Smoke(_Model, frozen=True, kw_only=True):
    """Where the smoke tests look, per environment (the runbook names what, not where).

    ``runtime_event_query``: the request (``GET ...``) that finds a runtime event by ``{id}``
    ("record visible in Mongo ``runtime_events``"); ``web_pages``: each Web UI page to load and
    the marker its HTML must contain ("dashboards render"; "policy views consistent");
    ``web_login``: how to log in first; ``browser``: the Chromium that Playwright drives.
    """

    runtime_event_query: str | None = None
    web_pages: dict[str, str] = {}
    web_login: WebLogin = field(default_factory=WebLogin)
    browser: str = "/usr/bin/chromium"


class Monitoring(_Model, frozen=True, kw_only=True):
    """Section 7's heightened monitoring and the T-30m "dashboards green": the Prometheus that
    scrapes the platform (its HTTP API), the PromQL of each series, and each series' limit.
    Every query is the site's: the defaults (``params/_base.yaml``) read the metric names Stella
    Ops' services export; nothing in the library names a metric."""

    duration: Duration = Duration(hours=4)
    interval: Duration = Duration(minutes=1)
    #: base URL of the Prometheus HTTP API (unset: T-30m reads health endpoints; Section 7 cannot run)
    prometheus: BaseUrl | None = None
    #: name -> PromQL; the notebooks name ``latency_p95_seconds``, ``error_rate``, ``queue_depth``,
    #: ``targets_down``, ``alerts_firing``, ``targets_up``
    promql: dict[str, str] = {}
    #: name -> the largest value that is still fine (Section 7's series)
    limits: dict[str, float] = {}


class Ticket(_Model, frozen=True, kw_only=True):
    """The change and incident tickets (Section 8's "Record Location"): a Jira-shaped REST API (v2).
    Unset ``system``: the ticket cells are not applicable and the records stay in the evidence."""

    system: Literal["jira"] | None = None
    url: BaseUrl | None = None
    token: SecretRef | None = None  # sent as "Authorization: Bearer <token>", never shown
    incident_project: str = "INC"
    close_transition: str = "31"  # the workflow transition id that closes the change ticket

    def __post_init__(self) -> None:
        if self.system and not (self.url and self.token):
            raise ValueError("ticket.system is set: give ticket.url and ticket.token (a secret reference) too")


class Audit(_Model, frozen=True, kw_only=True):
    """Section 7 "confirm audit trails": per trail, the request (a template over params) and the JSON
    field that must be above zero.  Unset here: each platform says where its audit trails are."""

    tokens_issued: str | None = None
    scan_events: str | None = None
    submissions: str | None = None


class Timeline(_Model, frozen=True, kw_only=True):
    """Section 2 on time.  A slot's run (``cutover run --phase t-12h``) is on time when it starts
    between ``early`` before and ``late`` after T0 + its offset; where ``enforce`` holds (always
    in prod: it cannot be turned off there) a run off its hour needs ``--at-any-time``, recorded.
    ``alarms``: during the T0 run, the times after T0 at which the bridge is alarmed while no smoke
    decision exists (T+30m, and the T+45m deadline)."""

    early: Duration = Duration(minutes=15)
    late: Duration = Duration(minutes=30)
    enforce: bool | None = None
    alarms: list[Duration] = field(default_factory=lambda: [Duration(minutes=30), Duration(minutes=45)])

    @property
    def enforced(self) -> bool:
        return bool(self.enforce)
