"""Machine-readable output: atomic JSON files and the `moderate --stats-out` naming/summing rules."""

import json
from dataclasses import dataclass

from tagwatch.moderation.runstats import child_stats_path, combine, read_stats, write_stats
from tagwatch.output import write_json_atomic


@dataclass
class _Stats:
    consumed: int = 3
    decided: int = 2
    dead_lettered: int = 1


def test_atomic_write_replaces_the_whole_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "deep" / "stats.json"
    write_json_atomic(target, {"a": "x" * 200})
    write_json_atomic(target, {"b": 1})
    assert json.loads(target.read_text()) == {"b": 1}
    assert [p.name for p in target.parent.iterdir()] == ["stats.json"]


def test_child_files_and_sums(tmp_path):
    base = tmp_path / "stats.json"
    assert [child_stats_path(base, i).name for i in range(2)] == ["stats.0.json", "stats.1.json"]
    write_stats(child_stats_path(base, 0), _Stats())
    write_stats(child_stats_path(base, 1), {"consumed": 4, "decided": 4, "dead_lettered": 0})
    (tmp_path / "broken.json").write_text("{\"consumed\": 1,")
    found = [read_stats(child_stats_path(base, i)) for i in range(3)] + [read_stats(tmp_path / "broken.json")]
    assert found[2] is None and found[3] is None  # killed child (no file), unreadable file
    assert combine(found) == {"consumed": 7, "decided": 6, "dead_lettered": 1, "processes": 4, "reported": 2}
