"""Machine-readable output: atomic JSON files and the `moderate --stats-out` naming/summing rules."""

import json
from dataclasses import dataclass

import pytest

from tagwatch.moderation.runstats import child_stats_path, combine, read_stats, write_stats
from tagwatch.output import staged_dir, write_json_atomic


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


def _fill(directory, text):
    (directory / "model.txt").write_text(text)


def test_staged_dir_keeps_a_copy_a_concurrent_writer_installed_first(tmp_path):
    # the race two consumers hit fetching the same model version: the other one renames its copy in while this one
    # is still writing; a content-addressed target (replace=False) keeps theirs and this fetch still succeeds
    target = tmp_path / "models" / "000001-abc"
    with staged_dir(target, prefix=".fetch-", replace=False) as staging:
        _fill(staging, "mine")
        target.mkdir()
        _fill(target, "theirs")
    assert (target / "model.txt").read_text() == "theirs"
    assert [p.name for p in target.parent.iterdir()] == ["000001-abc"]


def test_staged_dir_replace_swaps_the_whole_directory(tmp_path):
    target = tmp_path / "cache"
    target.mkdir()
    _fill(target, "old")
    (target / "stale.txt").write_text("gone after the swap")
    with staged_dir(target) as staging:
        _fill(staging, "new")
    assert sorted(p.name for p in target.iterdir()) == ["model.txt"]
    assert (target / "model.txt").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["cache"]


def test_staged_dir_leaves_nothing_behind_when_the_block_fails(tmp_path):
    target = tmp_path / "cache"
    with pytest.raises(RuntimeError):
        with staged_dir(target) as staging:
            _fill(staging, "half")
            raise RuntimeError("download broke")
    assert list(tmp_path.iterdir()) == []
