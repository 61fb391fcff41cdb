"""OpenMoji and Tux Paint stamps as post sources: parsing from small fixture files written here, the pinned-tarball
fetch (integrity, only the wanted members, idempotent), the source registry, and the real installed data.

The last two tests read the real OpenMoji cache and the real Debian package; they FAIL (never skip) when either is
missing, with the command that installs it: `make install` does both (sysdeps.txt + `tagwatch data fetch`)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from PIL import Image

from tagwatch.data.sources import get_source, licence_of, openmoji, parse_sources, tuxpaint
from tagwatch.data.sources.download import fetch_tarball, sri_digest
from tagwatch.errors import ConfigError

SVG = (b'<svg xmlns="http://www.w3.org/2000/svg" width="72" height="72" viewBox="0 0 72 72">'
       b'<circle cx="36" cy="36" r="30" fill="#d22f27"/></svg>')


def _entry(hexcode: str, annotation: str, tags: str = "", openmoji_tags: str = "", **extra) -> dict:
    return {"emoji": "?", "hexcode": hexcode, "group": extra.pop("group", "food-drink"), "subgroups": "drink",
            "annotation": annotation, "tags": tags, "openmoji_tags": openmoji_tags, "openmoji_author": "A. Designer",
            "skintone": extra.pop("skintone", ""), **extra}


def _openmoji_root(tmp_path: Path) -> Path:
    root = tmp_path / "openmoji"
    entries = [
        _entry("1F37A", "beer mug", "bar, beer, drink, mug", "Beer, oktoberfest"),
        _entry("1F48A", "pill", "doctor, medicine, sick", group="objects"),
        _entry("E181", "warning fire", "", "", group="extras-openmoji"),
        _entry("1F1EC-1F1E6", "flag: Gabon", "GA, flag", group="flags"),
        _entry("1F44D-1F3FB", "thumbs up: light skin tone", "hand, up", skintone=1, group="people-body"),
        _entry("1F3FB", "light skin tone", "skin", group="component"),
        _entry("1F377", "wine glass", "bar, wine"),  # no SVG in the fixture: not listed
    ]
    (root / "data").mkdir(parents=True)
    (root / "data" / "openmoji.json").write_text(json.dumps(entries))
    (root / "color" / "svg").mkdir(parents=True)
    for hexcode in ("1F37A", "1F48A", "E181", "1F1EC-1F1E6", "1F44D-1F3FB", "1F3FB"):
        (root / "color" / "svg" / f"{hexcode}.svg").write_bytes(SVG)
    return root


def test_openmoji_keywords_name_first_then_tags_without_repeats_or_region_codes() -> None:
    assert openmoji.entry_keywords(_entry("1F37A", "beer mug", "bar, beer, drink, mug", "Beer, oktoberfest")) == [
        "beer mug", "bar", "beer", "drink", "mug", "oktoberfest"]
    assert openmoji.entry_keywords(_entry("1F48A", "pill", "doctor, medicine")) == ["pill", "doctor", "medicine"]
    assert openmoji.entry_keywords(_entry("X", "flag: Gabon", "GA, flag", group="flags")) == ["flag"]
    assert openmoji.entry_keywords(_entry("X", "", "", "")) == []


def test_openmoji_lists_base_emoji_with_an_svg_and_renders_them(tmp_path) -> None:
    root = _openmoji_root(tmp_path)
    items = openmoji.list_items(root=root)
    assert [item.ref for item in items] == [  # sorted; no skin-tone variant, no component, no missing SVG
        "color/svg/1F1EC-1F1E6.svg", "color/svg/1F37A.svg", "color/svg/1F48A.svg", "color/svg/E181.svg"]
    assert openmoji.list_items(root=root, limit=2) == items[:2]
    rendered = openmoji.render_item(items[1], 64)
    assert rendered.error is None and rendered.image.size == (64, 64) and rendered.image.mode == "RGB"
    assert rendered.title == "beer mug" and rendered.author == "A. Designer" and "beer" in rendered.keywords
    assert rendered.image.getpixel((32, 32))[0] > 150  # the red circle, on white
    broken = items[2].payload["path"]
    Path(broken).write_bytes(b"<svg")
    assert openmoji.render_item(items[2], 64).error == "render_failed"


def test_openmoji_missing_says_which_command_fetches_it(tmp_path) -> None:
    with pytest.raises(ConfigError) as caught:
        openmoji.list_items(root=tmp_path / "nowhere")
    assert "tagwatch data fetch openmoji" in caught.value.hint


def test_openmoji_subset_copy_keeps_refs(tmp_path) -> None:
    root = _openmoji_root(tmp_path)
    items = openmoji.list_items(root=root)[1:3]
    openmoji.copy_items(items, tmp_path / "subset", root=root)
    assert openmoji.list_items(root=tmp_path / "subset") == [
        type(item)(source=item.source, ref=item.ref,
                   payload={**item.payload, "path": str(tmp_path / "subset" / item.ref)}) for item in items]


def _tarball(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_fetch_checks_integrity_extracts_only_what_is_needed_and_is_idempotent(tmp_path) -> None:
    data = _tarball({"package/data/openmoji.json": b"[]", "package/color/svg/1F37A.svg": SVG,
                     "package/black/svg/1F37A.svg": SVG, "package/README.md": b"x", "package/LICENSE.txt": b"CC"})
    calls = []

    def opener(url: str, timeout: float) -> bytes:
        calls.append(url)
        return data

    target = tmp_path / "cache" / "openmoji-17.0.0"
    wanted = openmoji._wanted_member
    with pytest.raises(ConfigError, match="integrity"):
        fetch_tarball(url="https://x/t.tgz", integrity=sri_digest(b"other"), target=target, wanted=wanted, opener=opener)
    assert not target.exists()
    assert fetch_tarball(url="https://x/t.tgz", integrity=sri_digest(data), target=target, wanted=wanted, opener=opener)
    files = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    assert files == [".fetched", "LICENSE.txt", "color/svg/1F37A.svg", "data/openmoji.json"]
    assert not fetch_tarball(url="https://x/t.tgz", integrity=sri_digest(data), target=target, wanted=wanted,
                             opener=opener)
    assert len(calls) == 2  # the second good call found the marker and downloaded nothing
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".")]  # no staging dirs left


def test_fetch_refuses_a_member_outside_the_target(tmp_path) -> None:
    data = _tarball({"package/../../evil.svg": SVG})
    with pytest.raises(ConfigError, match="escapes"):
        fetch_tarball(url="https://x/t.tgz", integrity=sri_digest(data), target=tmp_path / "t",
                      wanted=lambda name: name.split("/", 1)[1], opener=lambda url, timeout: data)
    assert not (tmp_path.parent / "evil.svg").exists()


def _stamp(root: Path, ref: str, description: str | None, image: bytes | None = None) -> None:
    path = root / ref
    path.parent.mkdir(parents=True, exist_ok=True)
    if image is None:
        buffer = io.BytesIO()
        Image.new("RGBA", (40, 20), (0, 0, 200, 255)).save(buffer, "PNG")
        image = buffer.getvalue()
    path.write_bytes(image)
    if description is not None:
        path.with_suffix(".txt").write_text(description + "\nde.utf8=Eine Übersetzung.\nfr.utf8=Une traduction.\n")


def test_tuxpaint_lists_one_item_per_stamp_svg_first_without_mirrors(tmp_path) -> None:
    _stamp(tmp_path, "military/longsword.svg", "A long sword.", SVG)
    _stamp(tmp_path, "military/longsword.png", None)
    _stamp(tmp_path, "military/vehicles/tank_mirror.png", None)
    _stamp(tmp_path, "symbols/money/00_symbols/euro_1_euro.png", "Euro sign.")
    _stamp(tmp_path, "cartoon/tux/tux-kiss1.png", None)
    items = tuxpaint.list_items(root=tmp_path)
    assert [item.ref for item in items] == [
        "cartoon/tux/tux-kiss1.png", "military/longsword.svg", "symbols/money/00_symbols/euro_1_euro.png"]
    keywords = {item.ref: tuxpaint.keywords_of(item) for item in items}
    assert keywords == {
        "cartoon/tux/tux-kiss1.png": ["cartoon", "tux", "kiss"],  # no .txt: the file name's words
        "military/longsword.svg": ["military", "long", "sword"],
        "symbols/money/00_symbols/euro_1_euro.png": ["symbols", "money", "euro", "sign"],
    }
    rendered = tuxpaint.render_item(items[1], 64)
    assert rendered.error is None and rendered.image.size == (64, 64) and rendered.title == "A long sword."
    png = tuxpaint.render_item(items[2], 64)
    assert png.error is None and png.image.getpixel((32, 32))[2] > 150 and png.image.getpixel((32, 2)) == (255, 255, 255)


def test_tuxpaint_description_is_the_english_line_and_its_content_words() -> None:
    assert tuxpaint.read_description("\nA syringe.\nde.utf8=Eine Spritze.\n") == "A syringe."
    assert tuxpaint.read_description("ca@valencia.utf8=Una espasa.\n") == ""
    assert tuxpaint.content_words("Grandma\u2019s old rag doll. A US 5 cent piece ($.05) called a nickel.") == [
        "grandma", "old", "rag", "doll", "cent", "piece", "nickel"]


def test_tuxpaint_missing_names_the_debian_package(tmp_path) -> None:
    with pytest.raises(ConfigError) as caught:
        tuxpaint.list_items(root=tmp_path / "nowhere")
    assert "tuxpaint-stamps-default" in caught.value.hint


def test_registry_knows_the_sources_and_their_licences() -> None:
    assert parse_sources("openclipart, openmoji,tuxpaint") == ("openclipart", "openmoji", "tuxpaint")
    assert parse_sources(["openmoji", "openmoji,synthetic"]) == ("openmoji", "synthetic")
    with pytest.raises(ConfigError, match="unknown source"):
        parse_sources("openclipart,clipart")
    assert get_source("tuxpaint") is tuxpaint
    assert licence_of("openmoji")["license"] == "CC-BY-SA-4.0" and "openmoji.org" in licence_of("openmoji")["attribution"]
    assert licence_of("tuxpaint")["license"] == "GPL-2.0-or-later"
    assert licence_of("openclipart")["license"] == "CC-PDDC"
    assert licence_of("someone-else") == {"license": None, "attribution": None, "url": None}


# -- the real data (installed by `make install`) --------------------------------------------------------------
def test_real_openmoji_cache_parses() -> None:
    root = openmoji.default_root()
    assert (root / openmoji.DATA_FILE).is_file(), (
        f"OpenMoji {openmoji.VERSION} is not in {root}: run `tagwatch data fetch openmoji` (`make install` does)")
    items = {item.ref: item for item in openmoji.list_items()}
    assert len(items) == 2456  # 4,495 entries less 2,030 skin-tone variants and 9 components
    assert "beer" in items["color/svg/1F37A.svg"].payload["keywords"]
    assert items["color/svg/1F489.svg"].payload["keywords"][0] == "syringe"
    assert openmoji.render_item(items["color/svg/1F52A.svg"], 64).error is None  # kitchen knife


def test_real_tuxpaint_stamps_parse() -> None:
    assert tuxpaint.DEFAULT_ROOT.is_dir(), (
        f"{tuxpaint.DEFAULT_ROOT} is missing: apt-get install {tuxpaint.PACKAGE} (`make sysdeps` / `make install`)")
    items = {item.ref: item for item in tuxpaint.list_items()}
    assert len(items) > 900
    assert tuxpaint.keywords_of(items["medical/syringe.png"]) == ["medical", "syringe"]
    assert tuxpaint.keywords_of(items["military/longsword.svg"]) == ["military", "long", "sword"]
    assert tuxpaint.render_item(items["medical/syringe.png"], 64).error is None
    assert tuxpaint.source_version() != "unknown"
