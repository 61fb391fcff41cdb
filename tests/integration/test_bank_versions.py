"""Banks as versioned indexes on the real SeaweedFS (issue 19 part 3): concurrent adds lose nothing, the alias
moves and rolls back, consumers (BankSource) load the version the alias names, a legacy JSON bank still reads."""

from __future__ import annotations

import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from tagwatch.clients import s3_client
from tagwatch.moderation.bank import BankEntry, HashBank, pdq_hex
from tagwatch.moderation.bank_source import BankSource
from tagwatch.moderation.bank_store import BankStore
from tests.conftest import run_cli, stack_env


def _noise(seed: int) -> Image.Image:
    """A detailed image (PDQ quality well over 50), distinct per seed."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (16, 16, 3)).astype(np.uint8)).resize((128, 128))


@pytest.fixture()
def store(stack_settings):
    return BankStore(s3_client(stack_settings.s3), stack_settings.s3.buckets.models)


def _bank() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


def test_two_cli_adds_at_once_keep_both_entries_as_consecutive_versions(stack_settings, store, tmp_path):
    bank = _bank()
    first = store.add(bank, _noise(1), "test: first")
    for seed in (2, 3):
        _noise(seed).save(tmp_path / f"{seed}.png")
    env = stack_env(stack_settings)
    start = threading.Barrier(2)

    def add(seed: int):
        start.wait()
        return run_cli("bank", "add", str(tmp_path / f"{seed}.png"), "--reason", f"test: {seed}", "--bank", bank,
                       env=env)

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(add, (2, 3)))
    assert all(r.returncode == 0 for r in results), [r.stdout + r.stderr for r in results]
    versions = store.versions(bank)
    held = store.load(bank)
    assert {e.pdq for e in held.entries} == {first.pdq, pdq_hex(_noise(2))[0], pdq_hex(_noise(3))[0]}
    listed = versions.list_versions()
    assert [(m.number, m.base_version, m.entries, m.added) for m in listed] == [(1, 0, 1, 1), (2, 1, 2, 1),
                                                                                 (3, 2, 3, 1)]
    assert versions.current()[0].version == 3 and versions.current()[0].previous == [2, 1]


def test_many_writers_racing_lose_no_entry(store):
    bank = _bank()
    when = "2026-01-01T00:00:00Z"
    rng = np.random.default_rng(11)
    entries = [BankEntry(entry_id=f"e{i}", pdq=rng.integers(0, 256, 32, dtype=np.uint8).tobytes().hex(),
                         reason="race", added_at=when, quality=90) for i in range(8)]
    start = threading.Barrier(4)

    def extend(chunk):
        start.wait()
        return store.extend(bank, chunk, reason="race")

    with ThreadPoolExecutor(4) as pool:
        written = list(pool.map(extend, [entries[i:i + 2] for i in range(0, 8, 2)]))
    assert sorted(w.version for w in written) == [1, 2, 3, 4] and all(w.added == 2 for w in written)
    assert sorted(e.entry_id for e in store.load(bank).entries) == [e.entry_id for e in entries]
    again = store.extend(bank, entries[:3])  # all held: nothing written
    assert (again.version, again.added) == (4, 0) and len(store.versions(bank).list_versions()) == 4


def test_rollback_moves_the_alias_and_a_consumer_loads_the_older_version(stack_settings, store):
    bank = _bank()
    old = store.add(bank, _noise(21), "test: old")
    new = store.add(bank, _noise(22), "test: new")
    source = BankSource(store, refresh_s=0.0)  # polls every call; reloads in a background thread
    matcher = source.matcher()
    mine = next(b for b in matcher.banks if b.name == bank)
    assert mine.version == 2 and matcher.match(new.pdq)[1].entry_id == new.entry_id
    assert f"{bank}@2" in matcher.version
    reloads = source.reloads
    assert source.matcher() is matcher and source.reloads == reloads  # the alias did not move: no reload

    rolled = run_cli("bank", "rollback", bank, "--to", "1", env=stack_env(stack_settings))
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    assert rolled.stdout.strip() == f"bank {bank}: alias names version 1 (was 2)"
    assert source.matcher() is matcher  # the old matcher keeps matching while the new one loads
    source.wait(60)
    after = source.matcher()
    assert next(b for b in after.banks if b.name == bank).version == 1 and source.reloads == reloads + 1
    assert after.match(new.pdq) is None or after.match(new.pdq)[0] != bank
    assert after.match(old.pdq)[1].entry_id == old.entry_id
    # history kept: version 2 is still there, and an add goes on top of what the alias names (1), as version 3
    third = store.add(bank, _noise(23), "test: after rollback")
    assert [m.number for m in store.versions(bank).list_versions()] == [1, 2, 3]
    assert {e.entry_id for e in store.load(bank).entries} == {old.entry_id, third.entry_id}


def test_list_and_show(stack_settings, store):
    bank = _bank()
    store.add(bank, _noise(31), "test: one", category="terrorism")
    store.add(bank, _noise(32), "test: two", action="review")
    env = stack_env(stack_settings)
    listed = run_cli("bank", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    row = next(r for r in json.loads(listed.stdout) if r["bank"] == bank)
    assert (row["version"], row["entries"]) == (2, 2) and row["reason"].startswith("add ")
    text = run_cli("bank", "list", env=env).stdout
    assert any(line.split()[:3] == [bank, "2", "2"] for line in text.splitlines())

    shown = json.loads(run_cli("bank", "show", bank, "--json", env=env).stdout)
    assert [(v["version"], v["entries"], v["current"]) for v in shown["versions"]] == [(1, 1, False), (2, 2, True)]
    assert shown["shown"]["by_category_action"] == {"terrorism/remove": 1, "other/review": 1}
    older = json.loads(run_cli("bank", "show", bank, "--version", "1", "--json", env=env).stdout)
    assert older["shown"]["version"] == 1 and older["shown"]["entries"] == 1
    text = run_cli("bank", "show", bank, env=env).stdout
    assert f"bank {bank}: alias names version 2 (earlier: 1)" in text and "version 2: 2 entries" in text


def test_a_legacy_json_bank_reads_as_version_0_and_its_first_add_builds_on_it(stack_settings, store):
    bank = _bank()
    legacy_pdq = pdq_hex(_noise(41))[0]
    document = HashBank(name=bank, entries=[BankEntry(entry_id="legacy1", pdq=legacy_pdq, reason="old",
                                                      added_at="2025-01-01T00:00:00Z")])
    s3 = s3_client(stack_settings.s3)
    key = f"banks/{bank}.json"
    s3.put_object(Bucket=stack_settings.s3.buckets.models, Key=key, Body=document.model_dump_json().encode())
    assert bank in store.names() and [e.entry_id for e in store.load(bank).entries] == ["legacy1"]
    matcher = BankSource(store, refresh_s=60.0).matcher()
    assert next(b for b in matcher.banks if b.name == bank).version == 0
    assert matcher.match(legacy_pdq)[1].entry_id == "legacy1"

    added = store.add(bank, _noise(42), "test: on top of the legacy bank")
    (first,) = store.versions(bank).list_versions()
    assert (first.number, first.base_version, first.entries) == (1, 0, 2)
    assert [e.entry_id for e in store.load(bank).entries] == ["legacy1", added.entry_id]
    assert s3.get_object(Bucket=stack_settings.s3.buckets.models, Key=key)["Body"].read()  # left where it was


def _random_entries(n: int, seed: int, prefix: str) -> list[BankEntry]:
    rng = np.random.default_rng(seed)
    return [BankEntry(entry_id=f"{prefix}{i}", pdq=rng.integers(0, 256, 32, dtype=np.uint8).tobytes().hex(),
                      reason="delta", added_at="2026-01-01T00:00:00Z", quality=90) for i in range(n)]


def _flip(pdq: str, bits: range) -> str:
    code = bytearray(bytes.fromhex(pdq))
    for bit in bits:
        code[bit // 8] ^= 0x80 >> (bit % 8)
    return bytes(code).hex()


def _loads(source: BankSource, bank: str) -> list[int]:
    """The segment versions of ``bank`` the consumer read from S3, in order."""
    return [version for name, version in source.segments.loaded if name == bank]


def test_an_add_writes_a_delta_and_a_consumer_that_had_the_base_loads_only_it(stack_settings, store):
    bank = _bank()
    base = _random_entries(20, 51, "b")
    query = _flip(base[0].pdq, range(100, 103))  # 3 bits from b0 ...
    twin = base[0].model_copy(update={"entry_id": "twin", "pdq": _flip(query, range(200, 203))})  # ... and twin
    store.extend(bank, base, reason="snapshot")
    source = BankSource(store, refresh_s=0.0, background=False)
    assert source.matcher().match(base[7].pdq)[1].entry_id == "b7" and _loads(source, bank) == [1]

    added = store.add(bank, _noise(52), "test: one more")
    store.extend(bank, [twin], reason="twin")
    versions = store.versions(bank)
    delta = versions.metadata(2)[0]
    assert [(s.version, s.rows) for s in delta.segments] == [(1, 20), (2, 1)]
    assert (delta.entries, delta.added, delta.base_version) == (21, 1, 1)
    assert delta.files["entries.jsonl"].bytes == len(added.model_dump_json()) + 1  # only the new entry's files
    assert versions.read_file(delta, "entries.jsonl").splitlines() == [added.model_dump_json().encode()]
    assert sorted(delta.files) == ["entries.jsonl", "index/codes.npy", "index/ids.npy", "index/radius.txt"]
    third = versions.metadata(3)[0]
    assert [(s.version, s.rows) for s in third.segments] == [(1, 20), (2, 1), (3, 1)]
    assert all(s.metadata_sha256 for s in third.segments[:2])  # earlier segments pinned by their metadata digest

    matcher = source.matcher()  # alias moved 1 -> 3: segments 2 and 3 loaded, 1 kept
    assert _loads(source, bank) == [1, 2, 3] and next(b for b in matcher.banks if b.name == bank).version == 3
    assert matcher.match(added.pdq)[1].entry_id == added.entry_id and matcher.match(base[3].pdq)[1].entry_id == "b3"
    assert matcher.match(query)[1:] == (base[0], 3)  # base row and delta row 3 bits away: the base row wins
    assert matcher.match(twin.pdq)[1].entry_id == "twin"
    assert [e.entry_id for e in store.load(bank).entries] == [e.entry_id for e in base] + [added.entry_id, "twin"]
    # hashes held in any segment are skipped
    again = store.extend(bank, [base[4], twin, added])
    assert (again.version, again.added, again.entries) == (3, 0, 22)


def test_compaction_after_the_limit_and_rollback_to_a_delta_version(stack_settings):
    store = BankStore(s3_client(stack_settings.s3), stack_settings.s3.buckets.models, max_segments=3)
    bank = _bank()
    base, more = _random_entries(20, 61, "b"), _random_entries(4, 62, "m")
    store.extend(bank, base, reason="snapshot")
    for entry in more[:2]:
        store.extend(bank, [entry], reason="delta")
    source = BankSource(store, refresh_s=0.0, background=False)
    before = [e.entry_id for e in store.load(bank).entries]
    assert source.matcher().match(more[1].pdq)[1].entry_id == "m1" and _loads(source, bank) == [1, 2, 3]

    store.extend(bank, [more[2]], reason="a 4th segment would pass the limit")
    versions = store.versions(bank)
    compacted = versions.metadata(4)[0]
    assert [(s.version, s.rows) for s in compacted.segments] == [(4, 23)] and compacted.entries == 23
    assert len(versions.read_file(compacted, "entries.jsonl").splitlines()) == 23
    assert [e.entry_id for e in store.load(bank).entries] == before + ["m2"]
    matcher = source.matcher()
    assert _loads(source, bank) == [1, 2, 3, 4] and matcher.match(base[0].pdq)[1].entry_id == "b0"

    store.rollback(bank, 3)  # a delta version: its segments (1, 2, 3) are all still there
    assert [e.entry_id for e in store.load(bank).entries] == before
    matcher = source.matcher()
    assert next(b for b in matcher.banks if b.name == bank).version == 3 and _loads(source, bank) == [1, 2, 3, 4, 1, 2, 3]
    assert matcher.match(more[2].pdq) is None and matcher.match(more[0].pdq)[1].entry_id == "m0"
    written = store.extend(bank, [more[3]], reason="on top of the rolled-back delta: compaction again")
    assert [(s.version, s.rows) for s in versions.metadata(written.version)[0].segments] == [(5, 23)]
    assert [e.entry_id for e in store.load(bank).entries] == before + ["m3"]


def test_racing_adds_on_a_delta_chain_lose_no_entry(store):
    bank = _bank()
    base, racing = _random_entries(40, 71, "b"), _random_entries(3, 72, "r")
    store.extend(bank, base, reason="snapshot")
    start = threading.Barrier(3)

    def extend(entry):
        start.wait()
        return store.extend(bank, [entry], reason="race")

    with ThreadPoolExecutor(3) as pool:
        written = list(pool.map(extend, racing))
    assert sorted(w.version for w in written) == [2, 3, 4]
    newest = store.versions(bank).metadata(4)[0]
    assert [s.version for s in newest.segments] == [1, 2, 3, 4] and newest.entries == 43
    assert sorted(e.entry_id for e in store.load(bank).entries[40:]) == ["r0", "r1", "r2"]
