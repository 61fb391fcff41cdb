"""Consumer-group membership that survives the embedded broker's group coordinator.

Tansu 0.6.0 (the stack's broker) has a group-coordinator bug that wedges a group for good: a LeaveGroup from
the member that leads a rebalance in progress removes the member but keeps it as the group's leader. Every
member that joins afterwards is a follower waiting for a SyncGroup the departed leader will never send, and
SyncGroup answers REBALANCE_IN_PROGRESS forever (seen: one member re-joining every 8 s for minutes, no
partition owned by anyone; only a broker restart clears it). A member that vanishes without a LeaveGroup
(SIGKILL) is handled: the broker expires it after ``session_timeout_ms`` and the group re-forms.

So a member leaves politely only when the coordinator confirms, right then, that no rebalance is in progress
(one heartbeat answered without REBALANCE_IN_PROGRESS); otherwise it closes without LeaveGroup and lets its
session expire, exactly like a crash, after its offsets are committed. On Apache Kafka the polite leave is
the common case and the fallback merely costs one session timeout.

These helpers reach into kafka-python's coordinator (pinned in constraints.txt); if its internals change they
fall back to "not stable" (no LeaveGroup), which is safe on every broker.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)


class GroupWatch:
    """The rebalance listener of one member: logs every change and remembers when the assignment last changed."""

    def __init__(self, tracker=None, metrics=None) -> None:
        self.changed_at = time.monotonic()
        self._stuck_minute: int | None = None
        self.tracker = tracker  # moderation/offsets.py: told of every revoke and assignment
        self.metrics = metrics  # /metrics shows what this member owns (machine-readable, unlike the log)

    def warn_if_stuck(self, seconds: float, metrics, kafka) -> None:
        """A member that cannot get stable membership for long says so (log + /healthz), once a minute."""
        limit = max(60.0, 10 * kafka.session_timeout_ms / 1000)
        if seconds > limit and int(seconds) // 60 != self._stuck_minute:
            self._stuck_minute = int(seconds) // 60
            metrics.healthy = False
            log.error("no stable group membership for %.0fs (group %s): partitions may be unowned; on Tansu a "
                      "leader that left mid-rebalance wedges the group until the broker restarts",
                      seconds, kafka.consumer_group)

    def recover(self, metrics) -> None:
        if self._stuck_minute is not None:
            self._stuck_minute = None
            metrics.healthy = True
            log.info("group membership stable again")

    def listener(self):
        from kafka import ConsumerRebalanceListener

        watch = self

        class LogRebalance(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked) -> None:
                watch.changed_at = time.monotonic()
                log.info("partitions revoked: %s", _names(revoked))
                if watch.tracker is not None:
                    watch.tracker.revoked(revoked)
                if watch.metrics is not None:
                    watch.metrics.assignment_changed(None)

            def on_partitions_assigned(self, assigned) -> None:
                watch.changed_at = time.monotonic()
                log.info("partitions assigned: %s", _names(assigned))
                if watch.tracker is not None:
                    watch.tracker.assigned(assigned)
                if watch.metrics is not None:
                    watch.metrics.assignment_changed(sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned))

            def on_partitions_lost(self, lost) -> None:
                watch.changed_at = time.monotonic()
                log.warning("partitions lost: %s", _names(lost))
                if watch.tracker is not None:
                    watch.tracker.revoked(lost)
                if watch.metrics is not None:
                    watch.metrics.assignment_changed(None)

        return LogRebalance()


def rebalancing(consumer) -> bool:
    """True while this member is (re)joining its group: between a revoke and the next assignment."""
    coordinator = getattr(consumer, "_coordinator", None)
    try:
        return not coordinator.stable() or coordinator.need_rejoin()
    except AttributeError:
        return False


def group_is_stable(consumer) -> bool:
    """Ask the coordinator now, with one heartbeat, whether the group is stable with this member in it."""
    coordinator = getattr(consumer, "_coordinator", None)
    try:
        if not coordinator.stable() or coordinator.need_rejoin():
            return False
        coordinator._net.run(coordinator._send_heartbeat_request)
        return not coordinator.need_rejoin()
    except Exception as error:  # noqa: BLE001 - any doubt means "not stable": the safe answer
        log.debug("group stability unknown (%s): treating as rebalancing", type(error).__name__)
        return False


def close_member(consumer) -> None:
    """Close the consumer; send LeaveGroup only if no rebalance is in progress (see the module docstring)."""
    if not group_is_stable(consumer):
        log.info("a rebalance is in progress: closing without LeaveGroup (the broker expires this member "
                 "after its session timeout; leaving now could wedge the group on Tansu)")
        try:
            consumer._coordinator.reset_generation()  # maybe_leave_group() sends nothing without a member id
        except AttributeError:
            pass
    consumer.close(autocommit=False)


def _names(tps) -> str:
    return ", ".join(sorted(f"{tp.topic}[{tp.partition}]" for tp in tps)) or "none"
