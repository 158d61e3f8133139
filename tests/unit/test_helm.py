"""Helm adapter: the previous-revision choice a rollback relies on (never a guess)."""

import pytest

from cutover_lib.adapters import helm as _helm
from cutover_lib.errors import CheckFailed


def rev(n, status, release="2025.09.1", desc="Upgrade complete"):
    return {"revision": n, "updated": "2025-10-27T14:02:11.1+00:00", "status": status,
            "chart": f"stellaops-{release}", "app_version": release, "description": desc}


@pytest.mark.parametrize("history, expected", [
    ([rev(1, "superseded"), rev(2, "deployed", "2025.09.2")], 1),
    ([rev(1, "superseded"), rev(2, "superseded"), rev(3, "deployed", "2025.09.2")], 2),
    # a failed upgrade in between never qualifies
    ([rev(1, "superseded"), rev(2, "failed", "2025.09.2"), rev(3, "deployed", "2025.09.2")], 1),
    # --atomic: failed revision, then "Rollback to 1" deployed; previous good is 1
    ([rev(1, "superseded"), rev(2, "failed", "2025.09.2"), rev(3, "deployed", desc="Rollback to 1")], 1),
    # pending and uninstalled revisions never qualify; an older "deployed" one does
    ([rev(1, "deployed"), rev(2, "pending-upgrade", "2025.09.2"), rev(3, "deployed", "2025.09.2")], 1),
    # out of order in the JSON
    ([rev(3, "deployed", "2025.09.2"), rev(1, "superseded"), rev(2, "superseded")], 2),
])
def test_previous_revision(history, expected):
    assert _helm.previous_revision(history) == expected


def test_previous_revision_matching_the_previous_release():
    hist = [rev(1, "superseded", "2025.08.3"), rev(2, "superseded", "2025.09.1"),
            rev(3, "superseded", "2025.09.2"), rev(4, "deployed", "2025.09.2")]
    assert _helm.previous_revision(hist) == 3  # same release re-applied: the plain rule
    assert _helm.previous_revision(hist, previous_release="2025.09.1") == 2
    with pytest.raises(CheckFailed, match=r"no earlier good revision running 2025.07.0 .*current is revision 4"):
        _helm.previous_revision(hist, previous_release="2025.07.0")


@pytest.mark.parametrize("history", [
    [rev(1, "deployed", desc="Install complete")],
    [rev(1, "failed"), rev(2, "deployed", "2025.09.2")],
    [rev(1, "uninstalled"), rev(2, "deployed", "2025.09.2")],
])
def test_no_previous_revision_is_a_clear_error_never_a_guess(history):
    with pytest.raises(CheckFailed) as ei:
        _helm.previous_revision(history)
    assert "no earlier good revision to roll back to" in ei.value.message
    assert "by hand" in ei.value.hint


def test_no_deployed_revision_at_all():
    with pytest.raises(CheckFailed, match="no deployed revision"):
        _helm.previous_revision([rev(1, "superseded"), rev(2, "pending-rollback")])
