"""Which post.created records a shadow run replays, read without a consumer group (assign + seek, no commits).

Three ways to name the range (``ReplayRange``):

  ``--from A --to B`` with offsets   every partition of the posts topic, offsets A (inclusive) to B (exclusive)
  ``--from T1 --to T2`` with times   records whose Kafka timestamp lies in [T1, T2); ISO 8601 or 30m/2h/7d ago.
                                     The start offset comes from ``offsets_for_times`` where the broker answers it,
                                     else offset 0; records are filtered by timestamp either way
  ``--ledger-range T1..T2``          the posts whose production decisions were recorded in [T1, T2) (the ledger
                                     object's write time); each decision names its record (topic, partition,
                                     offset), and exactly those records are read

Tansu's end offsets are unreliable (PLATFORM.md): a partition is read until its range is passed, or until nothing
new arrived for ``quiet_s``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from tagwatch.errors import ConfigError, EmptyRangeError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplayRange:
    start: int | datetime | None = None
    end: int | datetime | None = None
    records: dict[int, frozenset[int]] | None = None  # --ledger-range: partition -> exactly these offsets
    text: str = ""
    ledger_window: tuple[datetime, datetime] | None = None

    def to_dict(self) -> dict:
        def show(v):
            return v.isoformat() if isinstance(v, datetime) else v

        mode = "ledger" if self.records is not None else "time" if isinstance(self.start or self.end, datetime) \
            else "offsets"
        window = [w.isoformat() for w in self.ledger_window] if self.ledger_window else None
        return {"mode": mode, "from": show(self.start), "to": show(self.end), "ledger_window": window,
                "text": self.text}

    def keeps(self, record) -> bool:
        if self.records is not None:
            return record.offset in self.records.get(record.partition, ())
        for bound, below in ((self.start, False), (self.end, True)):
            if bound is None:
                continue
            value = record.timestamp if isinstance(bound, datetime) else record.offset
            limit = _ms(bound) if isinstance(bound, datetime) else bound
            if (value >= limit) if below else (value < limit):
                return False
        return True

    def passed(self, record) -> bool:
        """Nothing after ``record`` on its partition is in the range."""
        if self.records is not None:
            wanted = self.records.get(record.partition)
            return not wanted or record.offset >= max(wanted)
        if isinstance(self.end, datetime):
            return record.timestamp >= _ms(self.end)
        return self.end is not None and record.offset >= self.end - 1


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def parse_bound(text: str, option: str) -> int | datetime:
    """An offset (digits) or a time (ISO 8601, or 30m/2h/7d before now)."""
    from tagwatch.moderation.dlq import parse_since

    text = text.strip()
    return int(text) if text.isdigit() else parse_since(text, option=option)


def offsets_range(start: str | None, end: str | None) -> ReplayRange:
    """``--from``/``--to``: both offsets or both times (either may be left out)."""
    bounds = [parse_bound(t, o) if t else None for t, o in ((start, "--from"), (end, "--to"))]
    kinds = {type(b) for b in bounds if b is not None}
    if len(kinds) > 1:
        raise ConfigError("--from and --to mix an offset and a time", hint="give two offsets or two times")
    if bounds[0] is not None and bounds[1] is not None and bounds[1] <= bounds[0]:
        raise EmptyRangeError(f"--to {end} is not after --from {start}: the range is empty",
                              hint="--to is exclusive; give a later --to")
    return ReplayRange(start=bounds[0], end=bounds[1], text=f"--from {start or 'the start'} --to {end or 'the end'}")


def ledger_window(text: str) -> tuple[datetime, datetime]:
    """``T1..T2`` (``T2`` left out: now); each an ISO time or 30m/2h/7d before now."""
    from tagwatch.moderation.dlq import parse_since

    first, dots, second = text.partition("..")
    if not dots or not first.strip():
        raise ConfigError(f"--ledger-range {text!r} is not FROM..TO",
                          hint="e.g. --ledger-range 2h.. or --ledger-range 2026-12-01T00:00Z..2026-12-02T00:00Z")
    low = parse_since(first, option="--ledger-range")
    high = parse_since(second, option="--ledger-range") if second.strip() else datetime.now(timezone.utc)
    if high <= low:
        raise EmptyRangeError(f"--ledger-range {text!r} ends before it starts", hint="FROM..TO with FROM before TO")
    return low, high


def ledger_range(ledger, topic: str, text: str, *, workers: int = 16) -> ReplayRange:
    """The records of the posts whose ledger records were written in the window ``text`` names."""
    from concurrent.futures import ThreadPoolExecutor

    low, high = ledger_window(text)
    post_ids = [post_id for post_id, written in ledger.listing() if low <= written < high]
    with ThreadPoolExecutor(workers) as pool:
        decisions = [d for d in pool.map(ledger.get, post_ids) if d is not None]
    offsets: dict[int, set[int]] = {}
    for decision in decisions:
        source = decision.source or {}
        if source.get("topic") == topic:
            offsets.setdefault(int(source["partition"]), set()).add(int(source["offset"]))
    return ReplayRange(records={p: frozenset(o) for p, o in offsets.items()}, text=f"--ledger-range {text}",
                       ledger_window=(low, high))


def read_range(kafka, rng: ReplayRange, *, quiet_s: float = 2.0, timeout_s: float = 600.0,
               on_batch=None) -> list:
    """The records of ``kafka.topics.posts`` in ``rng``, in (partition, offset) order. EmptyRangeError if none."""
    from tagwatch.moderation.readback import TopicFollower

    topic = kafka.topics.posts
    if rng.records is not None and not any(rng.records.values()):
        raise EmptyRangeError(f"no production decision recorded in {rng.text.removeprefix('--ledger-range ')} "
                              f"names a record of {topic}", hint="widen the window; `tagwatch ledger` shows decisions")
    follower = TopicFollower(kafka, [topic], client_id="tagwatch-shadow", start=lambda c, tps: _starts(c, tps, rng))
    kept, done = [], set()
    partitions = {tp.partition for tp in follower.consumer.assignment()}
    if rng.records is not None:
        partitions &= set(rng.records)
    deadline, last_new = time.monotonic() + timeout_s, time.monotonic()
    try:
        while time.monotonic() < deadline and not partitions <= done:
            got = follower.poll()
            if got:
                last_new = time.monotonic()
            elif time.monotonic() - last_new > quiet_s:
                break
            for record in got:
                if record.partition in done:
                    continue
                if rng.keeps(record):
                    kept.append(record)
                if rng.passed(record):
                    done.add(record.partition)
            if on_batch is not None and got:
                on_batch(len(kept))
    finally:
        follower.close()
    if not kept:
        raise EmptyRangeError(f"no post.created record on {topic} in the range ({rng.text})",
                              hint="check the offsets or times: `tagwatch posts audit` shows what the topic holds")
    return sorted(kept, key=lambda r: (r.partition, r.offset))


def _starts(consumer, tps, rng: ReplayRange) -> dict:
    if rng.records is not None:
        return {tp: min(rng.records[tp.partition]) for tp in tps if rng.records.get(tp.partition)}
    if isinstance(rng.start, int):
        return {tp: rng.start for tp in tps}
    if isinstance(rng.start, datetime):
        try:
            found = consumer.offsets_for_times({tp: _ms(rng.start) for tp in tps})
        except Exception as error:  # noqa: BLE001 - a broker without ListOffsets by time: read from 0 and filter
            log.info("offsets_for_times unavailable (%s); reading from offset 0", type(error).__name__)
            return {}
        return {tp: found[tp].offset for tp in tps if found.get(tp) is not None}
    return {}
