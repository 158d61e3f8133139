"""Section 4.1 backups and Section 6 restores.

``tools`` mode runs against named stand-ins for ``mongodump``, ``mongorestore`` and ``mc``
(``tests/standins/bin``: no MongoDB or MinIO can run here); they write the real tools' layout,
log their argv, and echo the Mongo URI on purpose so the masking is proven with a canary.
``lab`` mode runs for real against a lab SQLite database and object-store folder.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from cutover_lib.adapters import backup as _backup
from stellaops_lab.backup_mode import LabBackup
from cutover_lib.errors import SecretError, StepFailed, ToolMissing
from cutover_lib.evidence.evidence import RunFolder
from cutover_lib.engine.steps import Runbook
from nb_helpers import run_cells

REPO = Path(__file__).resolve().parents[2]
STANDINS = REPO / "tests" / "standins" / "bin"
CANARY_PW = "CanaryPw-9d8e7f6a5b"
URI = f"mongodb://stellaops:{CANARY_PW}@db.example:27017/stellaops?authSource=admin"
MC_HOST = "https://minio-access:minio-Secret-5c7e9a@minio.example"  # an mc alias with its credentials
LAB = LabBackup()
TS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


def open_rb(project: Path, overrides: dict[str, Any] | None = None, *, dry_run: bool = False,
            phase: str = "cutover") -> Runbook:
    run = RunFolder.create(project / "executed", "local", phase)
    return Runbook.open("local", str(run.path), root=str(project), dry_run=dry_run,
                        overrides=json.dumps(overrides or {}), notebook="04_preflight.ipynb")


def evidence_text(rb: Runbook) -> str:
    return "".join(p.read_text(errors="replace") for p in rb.run.path.rglob("*") if p.is_file())


def argv_log(tmp_path: Path) -> list[list[str]]:
    path = tmp_path / "argv.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# --------------------------------------------------------------------------- tools mode (stand-ins)

@pytest.fixture()
def tools(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("PATH", f"{STANDINS}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("MONGO_BACKUP_URI", URI)
    monkeypatch.setenv("STANDIN_ARGV_LOG", str(tmp_path / "argv.jsonl"))
    monkeypatch.setenv("MC_STANDIN_ROOT", str(tmp_path / "s3"))
    monkeypatch.setenv("MC_HOST_MINIO", MC_HOST)  # the aliases' credentials (params tools.program_env)
    monkeypatch.setenv("MC_HOST_MINIO_BACKUP", MC_HOST.replace("minio.", "minio-backup."))
    bucket = tmp_path / "s3" / "minio" / "stellaops"
    (bucket / "policies").mkdir(parents=True)
    (bucket / "policies" / "default.rego").write_text("package stellaops.policy\n")
    (bucket / "bundles").mkdir()
    (bucket / "bundles" / "kit.json").write_text('{"release": "2025.09.2"}\n')
    out = tmp_path / "backups"
    overrides = {"backup": {"mode": "tools",
                            "mongo": {"uri": "env:MONGO_BACKUP_URI", "out_dir": str(out)},
                            "object_store": {"source": "minio/stellaops", "target_prefix": "minio-backup/stellaops-"}}}
    return {"overrides": overrides, "out": out, "s3": tmp_path / "s3"}


def cells(rb: Runbook, notebook: str, *step_ids: str) -> list[dict[str, Any]]:
    """Run the committed cells of ``step_ids``; their records (failed ones too)."""
    from nb_helpers import run_cells

    try:
        run_cells(rb, notebook, *step_ids, root=REPO)
    except (StepFailed, ToolMissing):
        pass
    recs = {r["step_id"]: r for r in rb.run.read_ledger() if r.get("kind") == "step"}
    return [recs[sid] for sid in step_ids if sid in recs]


def backup_cells(rb: Runbook) -> list[dict[str, Any]]:
    return cells(rb, "04_preflight.ipynb", "4.1.backup-mongo", "4.1.mirror-minio")


def restore_cells(rb: Runbook) -> list[dict[str, Any]]:
    return cells(rb, "08_rollback.ipynb", "6.restore-mongo", "6.restore-minio")


def test_mongodump_exact_argv_masked_evidence_and_verified_listing(project: Path, tmp_path: Path,
                                                                   tools: dict[str, Any],
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    rb = open_rb(project, tools["overrides"])
    (rec,) = cells(rb, "04_preflight.ipynb", "4.1.backup-mongo")
    assert rec["outcome"] == "passed", rec["message"]
    path = rec["data"]["path"]
    assert re.fullmatch(re.escape(str(tools["out"])) + f"/launch-{TS}", path)
    (call,) = argv_log(tmp_path)
    assert call[:2] == ["mongodump", "--config"] and call[3:] == ["--out", path]
    assert URI not in json.dumps(call) and CANARY_PW not in json.dumps(call)  # never in argv (ps)
    assert rec["command"] == f"mongodump --config secret-file:mongo_config --out {path}"
    assert rec["data"]["data_files"] == 2 and rec["data"]["data_bytes"] > 0
    listing = (rb.run.path / "artifacts" / "4.1.backup-mongo.listing.txt").read_text()
    assert "stellaops/runtime_events.bson" in listing and "stellaops/scans.metadata.json" in listing
    assert "artifacts/4.1.backup-mongo.listing.txt" in rec["artifacts"]
    # the stand-in read the URI from the config file and echoed it: it reached the log only as ***
    assert "connected to: ***" in (rb.run.path / "artifacts" / "4.1.backup-mongo.log").read_text()
    out = capsys.readouterr()
    for blob in (evidence_text(rb), out.out, out.err):
        assert CANARY_PW not in blob and URI not in blob
    # the rollback finds it in the ledger
    found = _backup.find_backup(rb, "4.1.backup-mongo")
    assert found is not None and found.location == path and found.run_id == rb.run.run_id


@pytest.mark.parametrize("knob, observed", [("STANDIN_MONGODUMP_EMPTY", "is empty"),
                                            ("STANDIN_MONGODUMP_NOTHING", "no .bson / .bson.gz file")])
def test_mongodump_output_that_is_empty_fails_the_step(project: Path, tools: dict[str, Any],
                                                       monkeypatch: pytest.MonkeyPatch, knob: str,
                                                       observed: str) -> None:
    monkeypatch.setenv(knob, "1")
    rb = open_rb(project, tools["overrides"])
    (rec,) = cells(rb, "04_preflight.ipynb", "4.1.backup-mongo")
    assert rec["outcome"] == "failed" and observed in rec["message"]
    assert rec["message"].startswith("expected exit 0; a snapshot folder")
    assert (rb.run.path / "artifacts" / "4.1.backup-mongo.listing.txt").exists()  # evidence before the failure


def test_mongodump_failure_is_masked(project: Path, tools: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STANDIN_FAIL", "1")
    rb = open_rb(project, tools["overrides"])
    (rec,) = cells(rb, "04_preflight.ipynb", "4.1.backup-mongo")
    assert "observed exit 1" in rec["message"]
    assert CANARY_PW not in evidence_text(rb)


def test_missing_tool_is_one_clear_line(project: Path, tools: dict[str, Any], tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    rb = open_rb(project, tools["overrides"])
    (rec,) = cells(rb, "04_preflight.ipynb", "4.1.backup-mongo")
    assert rec["message"].startswith("mongodump is not installed")
    assert "\n" not in rec["message"] and CANARY_PW not in rec["message"]


def test_dry_run_plans_without_running_or_resolving(project: Path, tools: dict[str, Any], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MONGO_BACKUP_URI")
    rb = open_rb(project, tools["overrides"], dry_run=True)
    recs = backup_cells(rb)
    assert [r["outcome"] for r in recs] == ["planned", "planned"]
    assert recs[0]["command"].startswith("mongodump --config secret-file:mongo_config --out ")
    assert re.fullmatch(r"mc mirror --overwrite minio/stellaops minio-backup/stellaops-\d{12}", recs[1]["command"])
    assert argv_log(tmp_path) == []


def test_mc_mirror_exact_argv_and_verification(project: Path, tools: dict[str, Any], tmp_path: Path) -> None:
    rb = open_rb(project, tools["overrides"])
    (rec,) = cells(rb, "04_preflight.ipynb", "4.1.mirror-minio")
    assert rec["outcome"] == "passed", rec["message"]
    target = rec["data"]["target"]
    assert re.fullmatch(r"minio-backup/stellaops-\d{12}", target)
    assert argv_log(tmp_path) == [["mc", "mirror", "--overwrite", "minio/stellaops", target],
                                  ["mc", "ls", "--recursive", "--json", "minio/stellaops"],
                                  ["mc", "ls", "--recursive", "--json", target]]
    assert rec["command"] == f"mc mirror --overwrite minio/stellaops {target}"
    assert (rec["data"]["files"], rec["data"]["source_files"]) == (2, 2)
    listing = (rb.run.path / "artifacts" / "4.1.mirror-minio.listing.txt").read_text()
    assert "bundles/kit.json" in listing and "policies/default.rego" in listing
    assert (tools["s3"] / target / "bundles" / "kit.json").exists()


def test_mc_gets_its_aliases_credentials_from_the_environment_only(project: Path, tools: dict[str, Any],
                                                                   tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """mc mirror and the mc ls of its checks get MC_HOST_<alias> (params tools.program_env), never an
    argument; an unset one fails the step naming the variable, the secret not shown anywhere."""
    rb = open_rb(project, tools["overrides"])
    (rec,) = cells(rb, "04_preflight.ipynb", "4.1.mirror-minio")
    assert rec["outcome"] == "passed", rec["message"]  # (the stand-in mc refuses an alias without credentials)
    secret = "minio-Secret-5c7e9a"
    assert secret not in (tmp_path / "argv.jsonl").read_text()
    assert not [p for p in rb.run.path.rglob("*") if p.is_file() and secret in p.read_text(errors="replace")]
    monkeypatch.delenv("MC_HOST_MINIO")
    rb = open_rb(project, tools["overrides"])
    with pytest.raises(SecretError, match="MC_HOST_MINIO is not set"):
        run_cells(rb, "04_preflight.ipynb", "4.1.mirror-minio", root=REPO)
    recs = [r for r in rb.run.read_ledger() if r.get("kind") == "step" and r.get("step_id") == "4.1.mirror-minio"]
    assert recs[-1]["outcome"] == "failed" and "MC_HOST_MINIO" in recs[-1]["message"]


def test_mc_mirror_of_an_empty_bucket_fails(project: Path, tools: dict[str, Any]) -> None:
    for p in sorted((tools["s3"] / "minio" / "stellaops").rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    rb = open_rb(project, tools["overrides"])
    (rec,) = cells(rb, "04_preflight.ipynb", "4.1.mirror-minio")
    assert rec["outcome"] == "failed" and "is empty (0 object(s), 0 bytes)" in rec["message"]


def test_tools_restores_skip_unless_requested(project: Path, tools: dict[str, Any], tmp_path: Path) -> None:
    rb = open_rb(project, tools["overrides"])
    backup_cells(rb)
    before = len(argv_log(tmp_path))
    recs = restore_cells(rb)
    assert [r["outcome"] for r in recs] == ["skipped", "skipped"]
    assert all("backup.restore_on_rollback is false here" in r["observed"] for r in recs)
    assert len(argv_log(tmp_path)) == before


def requested(overrides: dict[str, Any]) -> dict[str, Any]:
    return {**overrides, "backup": {**overrides["backup"], "restore_on_rollback": True}}


def test_tools_restores_when_requested_from_an_earlier_run(project: Path, tools: dict[str, Any], tmp_path: Path) -> None:
    pre = open_rb(project, tools["overrides"])
    path, target = (r["data"][k] for r, k in zip(backup_cells(pre), ("path", "target")))
    rb = open_rb(project, requested(tools["overrides"]), phase="rollback")
    start = len(argv_log(tmp_path))
    rec, obj = restore_cells(rb)
    assert rec["outcome"] == "passed", rec["message"]
    assert rec["command"] == f"mongorestore --config secret-file:mongo_config --drop {path}"
    assert "5 document(s) restored, 0 failed" in rec["observed"]
    assert obj["outcome"] == "passed", obj["message"]
    assert obj["command"] == f"mc mirror {target} minio/stellaops"
    calls = argv_log(tmp_path)[start:]
    assert calls[0][:2] == ["mongorestore", "--config"] and calls[0][3:] == ["--drop", path]
    assert calls[1:] == [["mc", "mirror", target, "minio/stellaops"],
                         ["mc", "ls", "--recursive", "--json", target],
                         ["mc", "ls", "--recursive", "--json", "minio/stellaops"]]
    assert CANARY_PW not in evidence_text(rb)


def test_mongorestore_with_failed_documents_fails(project: Path, tools: dict[str, Any],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    backup_cells(open_rb(project, tools["overrides"]))
    monkeypatch.setenv("STANDIN_MONGORESTORE_FAILED", "2")
    rb = open_rb(project, requested(tools["overrides"]), phase="rollback")
    rec = restore_cells(rb)[0]
    assert rec["outcome"] == "failed" and "2 document(s) failed to restore" in rec["message"]


def test_requested_restore_without_a_backup_fails(project: Path, tools: dict[str, Any]) -> None:
    rb = open_rb(project, requested(tools["overrides"]), phase="rollback")
    assert rb.results == []
    rec = restore_cells(rb)[0]
    assert rec["outcome"] == "failed"
    assert "no passed 4.1.backup-mongo step in this run or in executed/local/" in rec["message"]


# --------------------------------------------------------------------------- lab mode (real SQLite + folders)

@pytest.fixture()
def lab(project: Path) -> Path:
    from stellaops_lab import LabConfig
    from stellaops_lab._provision import provision
    from stellaops_lab._store import connect

    data = project / ".lab"
    provision(LabConfig(data))
    with closing(connect(data)) as db:
        for i in range(5):
            db.execute("INSERT INTO runtime_events (event_id, kind, tenant, node, received_at, body) "
                       "VALUES (?,?,?,?,?,?)", (f"evt-{i}", "container.start", "t1", "node-a",
                                                "2026-01-15T14:00:00Z", json.dumps({"n": i})))
    return data


def _events(data: Path) -> int:
    with closing(sqlite3.connect(data / "lab.sqlite3")) as db:
        return int(db.execute("SELECT COUNT(*) FROM runtime_events").fetchone()[0])


def test_lab_snapshot_and_mirror(project: Path, lab: Path) -> None:
    rb = open_rb(project)
    rec = LAB.snapshot(rb)
    assert rec["outcome"] == "passed", rec["message"]
    assert re.fullmatch(f".lab/backups/launch-{TS}", rec["data"]["path"])
    assert rec["data"]["runtime_events"] == 5 and rec["title"].endswith("(lab stand-in: SQLite copy)")
    assert rec["command"].startswith("lab stand-in for mongodump")
    assert any("named stand-in" in line for line in rec["output_tail"])
    snap = project / rec["data"]["path"]
    lines = (snap / "stellaops" / "runtime_events.jsonl").read_text().splitlines()
    assert [json.loads(line)["body"] for line in lines] == [{"n": i} for i in range(5)]
    assert sorted(p.name for p in snap.rglob("*") if p.is_file()) == ["lab.sqlite3", "runtime_events.jsonl"]
    assert (snap / "lab.sqlite3").stat().st_mode & 0o077 == 0

    mir = LAB.mirror(rb)
    assert mir["outcome"] == "passed", mir["message"]
    assert re.fullmatch(r"\.lab/minio-backup/stellaops-\d{12}", mir["data"]["target"])
    assert mir["data"]["files"] == mir["data"]["source_files"] == 3
    assert mir["data"]["bytes"] == mir["data"]["source_bytes"] > 0


def test_lab_snapshot_without_a_lab_fails_with_a_hint(project: Path) -> None:
    rb = open_rb(project)
    with pytest.raises(StepFailed):
        LAB.snapshot(rb)
    assert "cutover lab up" in rb.results[-1]["message"]


def test_lab_restores_skip_when_consistent(project: Path, lab: Path) -> None:
    pre = open_rb(project)
    LAB.snapshot(pre)
    LAB.mirror(pre)
    rb = open_rb(project, phase="rollback")
    mongo, obj = LAB.restore_mongo(rb), LAB.restore_object_store(rb)
    assert (mongo["outcome"], obj["outcome"]) == ("skipped", "skipped")
    assert "no data inconsistency detected (integrity ok, runtime_events 5 row(s) (snapshot 5))" in mongo["observed"]
    assert "present and unchanged" in obj["observed"]
    assert mongo["data"]["consistent"] is True and mongo["data"]["source_run"] == pre.run.run_id


def test_lab_restore_mongo_when_rows_are_lost(project: Path, lab: Path) -> None:
    pre = open_rb(project)
    LAB.snapshot(pre)
    with closing(sqlite3.connect(lab / "lab.sqlite3")) as db:
        db.execute("DELETE FROM runtime_events WHERE id > 2")
        db.commit()
    rb = open_rb(project, phase="rollback")
    rec = LAB.restore_mongo(rb)
    assert rec["outcome"] == "passed", rec["message"]
    assert any("fewer than the 5 in the snapshot" in line for line in rec["output_tail"])
    assert rec["data"]["restored"] is True and _events(lab) == 5


def test_lab_restore_mongo_when_the_database_is_corrupt(project: Path, lab: Path) -> None:
    pre = open_rb(project)
    LAB.snapshot(pre)
    for suffix in ("-wal", "-shm"):
        (lab / f"lab.sqlite3{suffix}").unlink(missing_ok=True)
    (lab / "lab.sqlite3").write_bytes(b"this is not a database" * 100)
    rb = open_rb(project, phase="rollback")
    rec = LAB.restore_mongo(rb)
    assert rec["outcome"] == "passed", rec["message"]
    assert _events(lab) == 5
    assert [p.name for p in lab.glob("lab.sqlite3.corrupt-*")]  # the broken file is kept, not destroyed


def test_lab_restore_object_store_when_objects_changed(project: Path, lab: Path) -> None:
    pre = open_rb(project)
    LAB.mirror(pre)
    policy = lab / "minio" / "stellaops" / "policies" / "default.rego"
    original = policy.read_text()
    policy.write_text("tampered\n")
    (lab / "minio" / "stellaops" / "bundles" / "offline-kit-2025.09.2.manifest.json").unlink()
    rb = open_rb(project, phase="rollback")
    rec = LAB.restore_object_store(rb)
    assert rec["outcome"] == "passed", rec["message"]
    assert sorted(rec["data"]["changed"]) == ["bundles/offline-kit-2025.09.2.manifest.json", "policies/default.rego"]
    assert policy.read_text() == original


def test_restore_finds_the_newest_backup_across_runs(project: Path, lab: Path) -> None:
    first = open_rb(project)
    LAB.snapshot(first)
    second = open_rb(project)
    newest = LAB.snapshot(second)["data"]["path"]
    rb = open_rb(project, phase="rollback")
    found = _backup.find_backup(rb, "4.1.lab-backup-mongo")
    assert found is not None and (found.run_id, found.location) == (second.run.run_id, newest)


def test_a_snapshot_never_writes_into_an_earlier_one(project: Path, tools: dict[str, Any], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Two snapshots within one second would share launch-<time>: the second is refused before mongodump runs."""
    from cutover_lib.engine import actions as _actions

    monkeypatch.setattr(_actions, "_clock", lambda: {"now": "2026-11-29T15:00:00Z", "now_minute": "202611291500"})
    (tools["out"] / "launch-2026-11-29T15:00:00Z").mkdir(parents=True)
    rb = open_rb(project, tools["overrides"])
    (rec,) = cells(rb, "04_preflight.ipynb", "4.1.backup-mongo")
    assert rec["outcome"] == "failed"
    assert "launch-2026-11-29T15:00:00Z already exists; this step never writes into an earlier one" in rec["message"]
    assert argv_log(tmp_path) == []
