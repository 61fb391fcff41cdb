"""Privacy pieces without services: the consent filter, author pseudonyms, the metadata stripper, and what the
trainer's shard samples may carry."""

from __future__ import annotations

import hashlib
import hmac
import io
import struct
from datetime import datetime, timezone

import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from pydantic import SecretStr, ValidationError

from tagwatch.data.manifest import ShardSample
from tagwatch.data.posts import Post
from tagwatch.data.sources import get_source
from tagwatch.moderation.events import PostCreated
from tagwatch.privacy.consent import filter_consented, mixed_consent, source_consent
from tagwatch.privacy.minimise import pseudonymise_author, strip_metadata

pytestmark = pytest.mark.unit

GPS_IFD = 0x8825
SHA = "0" * 64


def _post(post_id: str, consent: str | None = None) -> Post:
    extra = {} if consent is None else {"training_consent": consent}
    return Post(post_id=post_id, author_id="u-1", created_at=datetime(2024, 1, 1, tzinfo=timezone.utc),
                caption="#red", image_uri=f"s3://posts/images/x/{SHA}.jpg", image_sha256=SHA, source="x", **extra)


def test_only_granted_posts_train_by_default_and_erased_ones_never():
    posts = [_post("p-granted", "granted"), _post("p-denied", "denied"), _post("p-unknown", "unknown"),
             _post("p-old"), _post("p-erased", "granted")]
    kept, report = filter_consented(posts, unknown="exclude", erased={"p-erased", "p-not-here"})
    assert [p.post_id for p in kept] == ["p-granted"]
    assert report.excluded == {"denied": 1, "unknown": 2, "erased": 1}  # a record without the field is unknown
    assert report.policy == {"granted": "include", "denied": "exclude", "unknown": "exclude"}
    assert report.erasure_list == 2 and report.total_excluded == 4

    kept, report = filter_consented(posts, unknown="include", erased=frozenset())
    assert [p.post_id for p in kept] == ["p-granted", "p-unknown", "p-old", "p-erased"]
    assert report.excluded == {"denied": 1, "unknown": 0, "erased": 0} and report.policy["unknown"] == "include"


def test_records_and_events_written_before_consent_still_load_as_unknown():
    old = _post("p-old").model_dump(mode="json")
    del old["training_consent"]
    assert Post.model_validate(old).training_consent == "unknown"
    event = {"post_id": "p1", "author_id": "a", "created_at": "2024-01-01T00:00:00Z", "image_uri": "s3://b/k",
             "sha256": SHA}
    assert PostCreated.model_validate(event).training_consent == "unknown"
    with pytest.raises(ValidationError):
        PostCreated.model_validate({**event, "training_consent": "maybe"})


def test_sources_give_consent_open_corpora_granted_synthetic_a_visible_mix():
    assert source_consent(get_source("openclipart"), "openclipart-1") == "granted"
    assert source_consent(get_source("openmoji"), "openmoji-1") == "granted"
    synthetic = get_source("synthetic")
    values = [source_consent(synthetic, f"synthetic-{i:04d}") for i in range(2000)]
    assert values == [source_consent(synthetic, f"synthetic-{i:04d}") for i in range(2000)]  # fixed per post
    shares = {v: values.count(v) / len(values) for v in ("granted", "denied", "unknown")}
    assert 0.07 < shares["denied"] < 0.13 and 0.07 < shares["unknown"] < 0.13 and shares["granted"] > 0.74
    assert mixed_consent("x", denied=1.0) == "denied" and mixed_consent("x", denied=0.0, unknown=0.0) == "granted"


def test_author_pseudonyms_are_keyed_stable_and_not_the_plain_hash():
    key = SecretStr("k1")
    pseudonym = pseudonymise_author(key, "openclipart", "alice")
    assert pseudonym == pseudonymise_author(SecretStr("k1"), "openclipart", "alice")
    assert pseudonym.startswith("u-") and len(pseudonym) == 18
    expected = hmac.new(b"k1", b"openclipart:alice", hashlib.sha256).hexdigest()[:16]
    assert pseudonym == f"u-{expected}"
    # without the key a guessed name cannot be tested: the old unkeyed hash and another key give other ids
    assert pseudonym[2:] != hashlib.sha256(b"openclipart:alice").hexdigest()[:16]
    assert pseudonym != pseudonymise_author(SecretStr("k2"), "openclipart", "alice")
    assert pseudonym != pseudonymise_author(key, "openclipart", "bob")
    assert pseudonymise_author(key, "x", "") == pseudonymise_author(key, "x", "anonymous")


def _photo() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))


def _exif_with_gps() -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x0112] = 6  # Orientation
    exif.get_ifd(GPS_IFD).update({1: "N", 2: (52.0, 22.0, 12.5), 3: "E", 4: (4.0, 53.0, 2.0)})
    return exif


def _xmp_segment() -> bytes:
    payload = b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta><exif:GPSLatitude>52,22N</exif:GPSLatitude></x:xmpmeta>"
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def test_jpeg_loses_gps_exif_xmp_and_comments_and_keeps_its_pixels():
    buffer = io.BytesIO()
    _photo().save(buffer, "JPEG", quality=90, exif=_exif_with_gps(), comment=b"taken at home")
    original = buffer.getvalue()
    original = original[:2] + _xmp_segment() + original[2:]
    assert Image.open(io.BytesIO(original)).getexif().get_ifd(GPS_IFD)  # the test input really has a GPS block

    stripped = strip_metadata(original)
    image = Image.open(io.BytesIO(stripped))
    assert not image.getexif() and not image.getexif().get_ifd(GPS_IFD)
    assert "comment" not in image.info and "xmp" not in image.info and "exif" not in image.info
    for marker in (b"Exif\x00\x00", b"ns.adobe.com/xap", b"GPSLatitude", b"taken at home", b"PhoneMaker"):
        assert marker not in stripped
    assert np.array_equal(np.asarray(image), np.asarray(Image.open(io.BytesIO(original))))  # same pixels
    assert strip_metadata(stripped) == stripped  # nothing left to strip


def test_png_and_webp_lose_exif_and_text_chunks():
    buffer = io.BytesIO()
    info = PngInfo()
    info.add_text("Location", "52.37N 4.89E")
    _photo().save(buffer, "PNG", exif=_exif_with_gps(), pnginfo=info)
    stripped = strip_metadata(buffer.getvalue())
    image = Image.open(io.BytesIO(stripped))
    assert not image.getexif() and b"52.37N" not in stripped and b"eXIf" not in stripped
    assert np.array_equal(np.asarray(image), np.asarray(_photo()))

    buffer = io.BytesIO()
    _photo().save(buffer, "WEBP", lossless=True, exif=_exif_with_gps())
    assert b"EXIF" in buffer.getvalue()
    stripped = strip_metadata(buffer.getvalue())
    image = Image.open(io.BytesIO(stripped))
    assert b"EXIF" not in stripped and not image.getexif()
    assert np.array_equal(np.asarray(image.convert("RGB")), np.asarray(_photo()))


def test_bytes_that_are_no_parseable_image_are_left_as_they_are():
    for data in (b"", b"hello, not an image", b"\xff\xd8\xff\xe1\x00", b"\x89PNG\r\n\x1a\n\x00\x00"):
        assert strip_metadata(data) == data


def test_shard_samples_cannot_carry_an_author_id():
    """The trainer reads only ShardSample (extra fields are refused), and it has no author field."""
    assert not [name for name in ShardSample.model_fields if "author" in name or "user" in name]
    sample = {"post_id": "p1", "labels": [1], "weight": 1.0, "sha256": SHA, "source": "synthetic"}
    ShardSample.model_validate(sample)
    with pytest.raises(ValidationError):
        ShardSample.model_validate({**sample, "author_id": "u-1"})
