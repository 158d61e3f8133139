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
    imports="from cutover_lib import people, readiness",
    cells=[
        ("md", """
## Section 1 — Roles and communication

The cutover lead runs the bridge call (set up 30 minutes before start) and keeps
**#launch-bridge** updated every 10 minutes; `cutover run` posts phase starts, finishes, gate
decisions, failures and a heartbeat there on its own.
"""),
        ("code", "people.roles_and_channels(rb)"),
        ("md", "The bridge must take a post before anything else happens: every later update goes there."),
        ("code", "readiness.bridge_reachable(rb)"),
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

NOTEBOOKS["02_readiness.ipynb"] = dict(
    title="02 · Readiness: T-24h to T-30m (Section 2)",
    intro="""
**Phase:** `readiness` · **Runbook:** Section 2 (T-24h, T-12h, T-6h, T-30m) · **Owner:** DevOps lead

The day before T0, prove that production can be changed: the change ticket is approved, every
secret store holds the keys the release needs, the offline kit is built, and every deployment
profile renders. Then freeze other deployments and make the final go/no-go call.

*What good looks like:* every step below passes; the go/no-go step says **GO**.
""",
    imports="from cutover_lib import approvals, deploy, readiness",
    cells=[
        ("md", """
## T-24h — change ticket approved, prod secrets verified, offline kit checked

The change ticket approval is the **production deployment plan** gate of the approval matrix
(CTO + DevOps lead). Record it with `cutover approve --env ENV --gate plan ...` (or the form
below when stepping through in JupyterLab), then run the check.
"""),
        ("code", 'approvals.gate(rb, "plan")'),
        ("code", "readiness.change_ticket_approved(rb)"),
        ("md", """
Every secret store (`stellaops-prod-core`, `-mongo`, `-minio`, `-notify`) must hold every key
`values-prod.yaml` references. Only key **names** are checked; no value is read or printed.
"""),
        ("code", 'readiness.secret_stores(rb, section="2.t-24h")'),
        ("code", "readiness.offline_kit_status(rb)"),
        ("md", """
## T-12h — validate every deployment profile

The equivalent of `deploy/tools/validate-profiles.sh`: `docker compose config` for each compose
profile (dev, stage, prod, airgap, mirror) and `helm lint` / `helm template` for values files
where helm exists. Each profile's output is archived as an artifact for the ticket.
"""),
        ("code", "deploy.validate_profiles(rb)"),
        ("md", "## T-6h — freeze non-launch deployments; notify guild leads"),
        ("code", "readiness.freeze_notice(rb)"),
        ("md", """
## T-30m — final go/no-go

Every readiness step above passed and every service answers healthy ("monitoring dashboards
green"). A NO-GO names what is red.
"""),
        ("code", "readiness.go_no_go(rb)"),
    ],
)

NOTEBOOKS["03_rehearsal.ipynb"] = dict(
    title="03 · Rehearsal in staging (Section 3)",
    intro="""
**Phase:** `rehearsal` · **Runbook:** Section 3 · **Owner:** DevOps + module reps · **When:** T-2h

Run the production procedure against staging with `values-stage.yaml`, exactly as T0 will run
it, and write down how long it took and what deviated. **The rehearsal must complete without
manual interventions before proceeding to production** — the last step enforces that.
""",
    imports="from cutover_lib import checks, deploy, rehearsal",
    cells=[
        ("md", """
## Network, profiles, staging secrets

`docker network create stellaops_frontdoor` on the staging jump host: an existing network is
fine, any other error fails the step (no blanket `|| true`).
"""),
        ("code", 'deploy.network(rb, section="3")'),
        ("code", "deploy.validate_profiles(rb)"),
        ("md", "Apply staging secrets so `stellaops-stage` credentials align with `values-stage.yaml`."),
        ("code", "deploy.stage_secrets(rb)"),
        ("md", """
## Upgrade staging

`helm upgrade stellaops deploy/helm/stellaops -f deploy/helm/stellaops/values-stage.yaml` in the
staging cluster (or the environment's deploy mode).
"""),
        ("code", 'deploy.apply(rb, section="3")'),
        ("md", "## Health endpoints and the smoke CLI"),
        ("code", 'checks.service_health(rb, "authority", "3.health-authority")'),
        ("code", 'checks.service_health(rb, "scanner", "3.health-scanner")'),
        ("code", 'checks.smoke_scan(rb, step_id="3.scan-submit")'),
        ("md", """
## Wall time and deviations

Recorded into the rehearsal log (Section 9). Zero manual interventions are required.
"""),
        ("code", "rehearsal.wall_time_and_deviations(rb)"),
    ],
)

NOTEBOOKS["04_preflight.ipynb"] = dict(
    title="04 · T0 pre-flight (Sections 8 and 4.1)",
    intro="""
**Phase:** `cutover` · **Runbook:** Section 4.1, gates of Section 8 · **Owner:** cutover lead

Nothing changes in production until two gates pass: the **production deployment plan** (CTO +
DevOps lead) and **cutover start (T0)** (DevOps lead + module reps). In prod a missing approval
stops the run here, before any mutating step, with the exact `cutover approve` command to run.

Then pre-flight: secrets, the reverse-proxy network on each compose host, and backups that are
verified to exist and be non-empty.
""",
    imports="from cutover_lib import approvals, backup, deploy, readiness",
    cells=[
        ("md", "## Gates"),
        ("code", 'approvals.gate(rb, "plan")'),
        ("code", 'approvals.require(rb, "plan")'),
        ("code", 'approvals.gate(rb, "t0")'),
        ("code", 'approvals.require(rb, "t0")'),
        ("md", "## Production secrets hold the keys `values-prod.yaml` references"),
        ("code", 'readiness.secret_stores(rb, section="4.1")'),
        ("md", "## External reverse proxy network on each compose host"),
        ("code", 'deploy.network(rb, section="4.1")'),
        ("md", """
## Back up configuration and data

Mongo snapshot (`mongodump --uri "$MONGO_BACKUP_URI" --out /backups/launch-<time>`) and the
MinIO mirror (`mc mirror --overwrite minio/stellaops minio-backup/stellaops-<time>`). Each is
verified: the backup exists and is non-empty, with a listing kept as an artifact.
"""),
        ("code", "backup.backup_mongo(rb)"),
        ("code", "backup.mirror_object_store(rb)"),
    ],
)

NOTEBOOKS["05_apply.ipynb"] = dict(
    title="05 · Apply the release (Sections 4.2 and 4.3)",
    intro="""
**Phase:** `cutover` · **Runbook:** 4.2 (Compose) or 4.3 (Helm/Kubernetes) · **Owner:** DevOps engineer

The environment's deploy mode picks the path:

* **Compose**, on each compose node: `docker compose --env-file prod.env -f
  deploy/compose/docker-compose.prod.yaml pull`, then `up -d`, then wait until every container is
  healthy (`docker compose ps`) and keep `docker logs <service> --tail 50` for each service.
* **Helm**: `helm upgrade stellaops deploy/helm/stellaops -f deploy/helm/stellaops/values-prod.yaml
  --atomic --timeout 15m`, then rollout status per deployment.

If the release does not come up healthy, the run records the **rollback** decision and the
rollback phase (Section 6) follows.
""",
    imports="from cutover_lib import deploy",
    cells=[("code", "deploy.apply(rb)")],
)

NOTEBOOKS["06_validation.ipynb"] = dict(
    title="06 · Configuration validation (Section 4.4)",
    intro="""
**Phase:** `cutover` · **Runbook:** Section 4.4 · **Owner:** module reps

The new release is up; before the smoke tests, check that it is wired right: the Authority's
issuer metadata, the Signer's DSSE endpoint, the Scanner's queue connection, and that the
legacy Notify service is still reachable while the Notifier migration is pending.
""",
    imports="from cutover_lib import checks",
    cells=[
        ("md", "Issuer metadata: `issuer` must equal the Authority's base URL; `jwks_uri` must answer with keys."),
        ("code", "checks.oidc_metadata(rb)"),
        ("md", "`stellaops-cli signer verify --bundle samples/dsse/demo.json` must verify."),
        ("code", "checks.signer_verify_bundle(rb)"),
        ("md", "`StellaOps.Scanner.WebService.dll health queue` must return success."),
        ("code", "checks.scanner_queue(rb)"),
        ("code", "checks.notify_legacy(rb)"),
    ],
)

NOTEBOOKS["07_smoke.ipynb"] = dict(
    title="07 · Smoke tests and the go / rollback decision (Sections 5 and 8)",
    intro="""
**Phase:** `cutover` · **Runbook:** Section 5 · **Owner:** cutover lead · **Deadline:** T+45m

Six smoke tests, each with the runbook's expected result as its assertion. All six run even if
one fails; then the decision step announces **GO** or triggers the **rollback** (Section 6).
Results are logged with timestamps; the report compares the finish time with the T+45m deadline.
""",
    imports="from cutover_lib import approvals, checks",
    cells=[
        ("md", '**API health** — `curl https://scanner.../healthz` → HTTP 200 with `"status":"Healthy"`.'),
        ("code", "checks.smoke_api_health(rb)"),
        ("md", "**Scan submit** — completes in under 5 minutes; the report is accessible with a signed DSSE "
               "that verifies against the Signer's key."),
        ("code", "checks.smoke_scan(rb)"),
        ("md", "**Runtime event ingest** — the Zastava observer fixture: `/runtime/events` answers 202 Accepted and "
               "the record is visible in `runtime_events`."),
        ("code", "checks.smoke_runtime_event(rb)"),
        ("md", "**Signing** — returns a DSSE whose payload SHA-256 matches the bundle, with signer metadata."),
        ("code", "checks.smoke_signing(rb)"),
        ("md", "**Attestor verify** — verification result `ok=true` for the stored envelope's uuid."),
        ("code", "checks.smoke_attestor_verify(rb)"),
        ("md", "**Web UI** — loads under 2 seconds; dashboard and policy view render."),
        ("code", "checks.smoke_web_ui(rb)"),
        ("md", "## Decision"),
        ("code", "checks.decision(rb)"),
        ("md", "## Post-smoke success (DevOps lead + product owner), recorded for the change ticket closure"),
        ("code", 'approvals.gate(rb, "post-smoke")'),
        ("code", 'approvals.require(rb, "post-smoke")'),
    ],
)

NOTEBOOKS["08_rollback.ipynb"] = dict(
    title="08 · Rollback (Section 6)",
    intro="""
**Phase:** `rollback` (runs automatically when smoke tests fail) · **Runbook:** Section 6 ·
**Owner:** cutover lead

Assess the failure scope; if systemic, roll back immediately while preserving logs and
artifacts (this run's evidence already holds them). In prod the rollback needs the DevOps lead
and the CTO (Section 8).

* Compose: `docker compose --env-file prod.env -f deploy/compose/docker-compose.prod.yaml down`,
  then `docker compose --env-file stage.env -f deploy/compose/docker-compose.stage.yaml up -d`.
* Helm: `helm rollback stellaops <previous-release-number> --namespace stellaops`, with the
  number read from `helm history`, never guessed.
* Restore the Mongo snapshot and the MinIO mirror only when needed.
""",
    imports="from cutover_lib import approvals, backup, deploy, rollback",
    cells=[
        ("code", "rollback.assess(rb)"),
        ("code", 'approvals.gate(rb, "rollback")'),
        ("code", 'approvals.require(rb, "rollback")'),
        ("code", "deploy.rollback(rb)"),
        ("md", "## Conditional restores"),
        ("code", "backup.restore_mongo(rb)"),
        ("code", "backup.restore_object_store(rb)"),
        ("md", "## Tell stakeholders; root cause notes go to the incident ticket"),
        ("code", "rollback.notify_stakeholders(rb)"),
    ],
)

NOTEBOOKS["09_post_cutover.ipynb"] = dict(
    title="09 · Post-cutover actions (Section 7)",
    intro="""
**Phase:** `post` · **Runbook:** Section 7 · **Owner:** DevOps + product owner · **Until:** T+4h

Keep heightened monitoring (4 hours in prod): latency, error rates and queue depth, sampled into
a CSV and plotted below. Confirm the audit trails, schedule the retrospective within 48 hours,
and list what `docs/ops/launch-readiness.md` needs.
""",
    imports="from cutover_lib import post",
    cells=[
        ("code", "post.monitor(rb)"),
        ("code", "post.audit_trails(rb)"),
        ("code", "post.retrospective_invite(rb)"),
        ("code", "post.docs_follow_up(rb)"),
    ],
)

NOTEBOOKS["10_rehearsal_log.ipynb"] = dict(
    title="10 · Rehearsal log (Section 9)",
    intro="""
**Phase:** `post` (and any time) · **Runbook:** Section 9

Generated from every run kept under `executed/`: date, what was exercised, outcome, follow-up,
wall time and manual interventions. This replaces the hand-kept table; the runbook's own first
entry (2025-10-26) noted that no staging cluster was reachable — the lab closes that gap.
""",
    imports="from cutover_lib import rehearsal",
    cells=[("code", "rehearsal.rehearsal_log(rb)")],
)
