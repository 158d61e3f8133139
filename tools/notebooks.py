"""The runbook notebooks, cell by cell: prose for the operator, then one call per step.

``python tools/nbgen.py`` writes them to ``notebooks/``.
"""

NOTEBOOKS = {}

NOTEBOOKS["01_roles_and_timeline.ipynb"] = dict(
    title="01 · Roles, communication, timeline and approvals (Sections 1, 2, 8)",
    intro="""
**Phase:** `readiness` · **Runbook:** Sections 1, 2 and 8 · **Owner:** cutover lead

Before anything touches production, everyone must know who does what, where they talk, when
each activity happens and who has to approve which gate. This notebook renders those tables
from the environment's params — the same values the rest of the run uses — and checks that
none is incomplete.

*What good looks like:* every role has a primary, a backup and a channel; every activity has a
UTC time computed from T0; every gate of the approval matrix names its approvers.
""",
    imports="from cutover_lib import people",
    cells=[
        ("md", """
## Section 1 — Roles and communication

The cutover lead runs the bridge call (set up 30 minutes before start) and keeps
**#launch-bridge** updated every 10 minutes; `cutover run` posts phase starts, finishes, gate
decisions, failures and a heartbeat there on its own.
"""),
        ("code", "people.roles_and_channels(rb)"),
        ("md", """
## Section 2 — Timeline (UTC)

All times derive from T0 in params. `cutover timeline --env ENV` prints the same table; the run
report compares each planned time with the actual time the steps ran and flags a breach of the
T+45m smoke deadline.
"""),
        ("code", "people.timeline(rb)"),
        ("md", """
## Section 8 — Approval matrix

Gates stop the run until the roles listed here have approved (in prod). Approvals are recorded
with `cutover approve` or with the approval cell of the notebook that holds the gate; every
approval and waiver a run relies on is part of its evidence.
"""),
        ("code", "people.approval_matrix(rb)"),
    ],
)
