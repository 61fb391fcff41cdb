"""OpenMoji and Tux Paint stamps end to end on the real embedded SeaweedFS: a few real items of each (copied subsets
of the installed data, chosen to hold positives) plus openclipart, ingested with the real CLI, one dataset built from
all three sources; the manifest must record every source with its licence, posts, samples and positives."""

from __future__ import annotations

import json

import pytest

from tagwatch.clients import s3_client
from tagwatch.data.provenance import manifest_of
from tagwatch.data.sources import openmoji, tuxpaint
from tests.conftest import run_cli
from tests.support.buckets import private_data_buckets

OPENMOJI_REFS = ["color/svg/1F37A.svg", "color/svg/1F489.svg", "color/svg/1F52A.svg", "color/svg/1F6AC.svg",
                 "color/svg/1F436.svg", "color/svg/1F34E.svg"]  # beer, syringe, knife, cigarette, dog, apple
TUXPAINT_REFS = ["medical/syringe.png", "military/longsword.svg", "military/ammunition/bullet.svg",
                 "food/cheese.svg", "medical/stethoscope.png"]


@pytest.fixture(scope="module")
def built(stack_settings, tmp_path_factory):
    client = s3_client(stack_settings.s3)
    posts, datasets, env = private_data_buckets(stack_settings)
    subsets = tmp_path_factory.mktemp("subsets")
    for module, refs in ((openmoji, OPENMOJI_REFS), (tuxpaint, TUXPAINT_REFS)):
        items = [item for item in module.list_items() if item.ref in refs]  # the real installed data
        assert len(items) == len(refs), f"{module.NAME}: {sorted(set(refs) - {i.ref for i in items})} missing"
        module.copy_items(items, subsets / module.NAME)
    ingests = {}
    for source, extra in (("openmoji", ["--source-dir", str(subsets / "openmoji")]),
                          ("tuxpaint", ["--source-dir", str(subsets / "tuxpaint")]),
                          ("openclipart", ["--limit", "40"])):
        result = run_cli("data", "ingest", "--source", source, *extra, "--workers", "2", "--json", env=env, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        ingests[source] = json.loads(result.stdout)
    result = run_cli("data", "build", "--source", "openclipart,openmoji", "--source", "tuxpaint", "--min-count", "1",
                     "--shard-samples", "50", "--json", env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    yield {"client": client, "datasets": datasets, "ingests": ingests, "report": json.loads(result.stdout), "env": env}


def test_each_new_source_ingests_its_items(built) -> None:
    assert built["ingests"]["openmoji"]["ingested"] == len(OPENMOJI_REFS)
    assert built["ingests"]["openmoji"]["source_version"] == openmoji.VERSION
    assert built["ingests"]["tuxpaint"]["ingested"] == len(TUXPAINT_REFS)
    assert built["ingests"]["tuxpaint"]["source_version"] == tuxpaint.source_version() != "unknown"


def test_manifest_records_sources_licences_and_positives(built) -> None:
    manifest = manifest_of(built["client"], built["datasets"], "hashtags")
    manifest.verify()
    by_name = {info.name: info for info in manifest.sources}
    assert set(by_name) == {"openclipart", "openmoji", "tuxpaint"}
    assert {name: info.license for name, info in by_name.items()} == {
        "openclipart": "CC-PDDC", "openmoji": "CC-BY-SA-4.0", "tuxpaint": "GPL-2.0-or-later"}
    assert all(info.attribution and info.url for info in by_name.values())
    assert by_name["openmoji"].posts == len(OPENMOJI_REFS) and by_name["tuxpaint"].posts == len(TUXPAINT_REFS)
    assert sum(sum(info.splits.values()) for info in by_name.values()) == sum(s.samples for s in manifest.splits.values())

    def positives(source: str, category: str) -> int:
        return sum(by_name[source].positives[category].values())

    # the holdout keeps every post, train/val need a label: with --min-count 1 every post here has one
    assert (positives("openmoji", "alcohol"), positives("openmoji", "drugs"), positives("openmoji", "tobacco")) == (1, 1, 1)
    assert positives("openmoji", "weapons") == 1  # the kitchen knife
    assert (positives("tuxpaint", "drugs"), positives("tuxpaint", "weapons")) == (1, 2)  # syringe; sword, bullet


def test_sources_cli_prints_the_table_with_attribution(built) -> None:
    result = run_cli("data", "sources", env=built["env"])
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("| source | version | licence | posts | samples | weapons |")
    assert any(line.startswith("| openmoji | 17.0.0 | CC-BY-SA-4.0 | 6 | 6 |") for line in lines), result.stdout
    assert any(line.startswith("- openmoji: All emojis designed by OpenMoji") for line in lines)
