"""#launch-bridge from the runner process: what a run posts, and its anchor after the seal."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..config.params import Environment
from .evidence import RunFolder

__all__ = ["BridgeReporter"]


class BridgeReporter:
    """#launch-bridge from the runner process (never the kernel): phase start and finish, gate
    decisions, each failed step, and a heartbeat every ``bridge.heartbeat`` while the run is
    active.  Every post is recorded in the ledger; a failing webhook never fails the run.
    A dry run posts nothing."""

    def __init__(self, env: Environment, phase: str, run: RunFolder, dry_run: bool,
                 notebooks: Sequence[str] = ()) -> None:
        self.env, self.phase, self.run, self.notebooks = env, phase, run, list(notebooks)
        self.enabled = not dry_run and env.bridge.webhook is not None
        self.bridge: Any = None
        self.heartbeat: Any = None
        self.deadline: Any = None

    def start(self) -> None:
        if not self.enabled:
            return
        from ..adapters.notify import Bridge, Heartbeat, ledger_status, phase_started

        self.bridge = Bridge(self.env.bridge, run=self.run, verify=self.env.tls_verify)
        self.bridge.send(phase_started(self.env, self.phase, self.run.run_id, False))
        self.heartbeat = Heartbeat(self.bridge, self.env, self.phase, self.run.run_id,
                                   lambda: ledger_status(self.run), run=None, head_fn=self.run.ledger_head).start()
        if any(r.get("kind") in ("slot", "slot-resume") and r.get("slot") == "T0" for r in self.run.read_ledger()):
            from ..engine.slots import (  # T0: T+30m / T+45m without a decision alarm the bridge
                SmokeDeadline,
                running_now,
            )

            self.deadline = SmokeDeadline(self.env, self.run, self.bridge.send, lambda: running_now(self.run, self.notebooks)).start()

    def on_record(self, rec: dict[str, Any]) -> None:
        if not self.enabled:
            return
        from ..adapters.notify import gate_decision, step_failed

        kind = rec.get("kind")
        if kind in ("approval", "rejection", "waiver"):
            self.bridge.send(gate_decision(rec))
        elif kind == "step" and ".gate-" in rec.get("step_id", "") and rec.get("outcome") == "failed":
            self.bridge.send(gate_decision(rec))
        elif kind == "step" and rec.get("outcome") == "failed":
            self.bridge.send(step_failed(rec))

    def finish(self, outcome: str, message: str, index: Path) -> None:
        if not self.enabled:
            return
        from ..adapters.notify import ledger_status, phase_finished

        self.heartbeat.stop()
        if self.deadline is not None:
            self.deadline.stop()
        _, counts = ledger_status(self.run)
        self.bridge.send(phase_finished(self.env, self.phase, self.run.run_id, outcome, message, counts, str(index)))

    def anchor(self, outcome: str) -> str | None:
        """After the seal: its ledger head and key to the bridge (not recorded in the sealed ledger)."""
        if not self.enabled or self.run.signed is None:
            return None
        from ..adapters.notify import Bridge, sealed

        result = Bridge(self.env.bridge, verify=self.env.tls_verify).send(
            sealed(self.env, self.phase, self.run.run_id, outcome, self.run.signed))
        return None if result.ok else f"the seal's ledger head was not posted to the bridge ({result.error})"
