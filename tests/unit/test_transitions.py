"""Which watch events of trainer pods and Jobs wake a reconciler: changes of state only."""

from __future__ import annotations

from kubenas.operator.runtime import Transitions


def test_only_a_change_of_state_is_news() -> None:
    seen = Transitions()
    assert not seen.changed("pod-a", None)  # pending: nothing to tell
    assert seen.changed("pod-a", "running")
    assert not seen.changed("pod-a", "running")  # status rewritten, still running
    assert seen.changed("pod-a", "terminated")
    assert not seen.changed("pod-a", "terminated")  # the Job controller removed its finalizer
    assert seen.changed("pod-b", "terminated")  # ended before it was ever seen running


def test_a_deleted_object_is_forgotten_and_its_last_state_still_counts() -> None:
    seen = Transitions()
    assert seen.changed("pod-a", "running")
    assert seen.changed("pod-a", "terminated", gone=True)  # the end first shows in the DELETED event
    assert len(seen) == 0
    assert seen.changed("job-a", "complete")
    assert not seen.changed("job-a", "complete", gone=True)
    assert len(seen) == 0
