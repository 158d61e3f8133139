"""The runbook's steps that are not one command or request (the go/no-go, readiness across slots,
the decision, rollback bookkeeping, the retrospective), and Section 2 on a scheduler and the bridge."""
