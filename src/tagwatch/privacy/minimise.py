"""Data minimisation: image metadata stripped before storage, author ids pseudonymised with a keyed hash.

``strip_metadata`` works on the container, never on the pixels: it copies a JPEG's, PNG's or WebP's image data
byte for byte and leaves out the segments and chunks that carry metadata (EXIF with its GPS block, XMP, IPTC,
comments, text chunks). Nothing is decoded, so a decompression bomb costs no more than its bytes and the pixels
stay exactly what was uploaded. The EXIF orientation tag goes too: tagwatch's preprocessing never applied it, so
what the model sees does not change. Bytes whose structure cannot be parsed are returned as they are (they are no
image a decoder accepts; moderation dead-letters them); formats other than these three carry no EXIF block.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

from pydantic import SecretStr

JPEG_SOI = b"\xff\xd8"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG APPn segments kept: APP0 (JFIF header), APP2 when it is an ICC colour profile, APP14 (Adobe colour
# transform). Every other APPn (APP1 = EXIF/XMP, APP13 = IPTC/Photoshop, ...) and COM are dropped.
_KEEP_APP = {0xE0, 0xEE}
_STANDALONE = {0x01, *range(0xD0, 0xD8)}
# PNG ancillary chunks that hold metadata: EXIF, text (XMP is an iTXt chunk), time of last change.
_PNG_METADATA = {b"eXIf", b"tEXt", b"iTXt", b"zTXt", b"tIME"}
_WEBP_METADATA = {b"EXIF", b"XMP "}


def strip_metadata(data: bytes) -> bytes:
    """``data`` without EXIF/GPS/XMP/IPTC/comment metadata; the image data itself unchanged."""
    try:
        if data.startswith(JPEG_SOI):
            return _strip_jpeg(data)
        if data.startswith(PNG_SIGNATURE):
            return _strip_png(data)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _strip_webp(data)
    except (ValueError, struct.error):
        return data
    return data


def _strip_jpeg(data: bytes) -> bytes:
    out = bytearray(JPEG_SOI)
    pos = 2
    while pos < len(data):
        if data[pos] != 0xFF:
            raise ValueError(f"no JPEG marker at byte {pos}")
        while pos + 1 < len(data) and data[pos + 1] == 0xFF:  # fill bytes
            pos += 1
        marker = data[pos + 1]
        if marker in _STANDALONE:
            out += data[pos:pos + 2]
            pos += 2
            continue
        if marker == 0xDA or marker == 0xD9:  # start of scan: the entropy-coded data and the rest, verbatim
            out += data[pos:]
            return bytes(out)
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        segment = data[pos:pos + 2 + length]
        if len(segment) < 2 + length or length < 2:
            raise ValueError("truncated JPEG segment")
        is_app = 0xE0 <= marker <= 0xEF
        keep = not (is_app or marker == 0xFE) or marker in _KEEP_APP or (
            marker == 0xE2 and segment[4:16] == b"ICC_PROFILE\x00")
        if keep:
            out += segment
        pos += 2 + length
    return bytes(out)


def _strip_png(data: bytes) -> bytes:
    out = bytearray(PNG_SIGNATURE)
    pos = len(PNG_SIGNATURE)
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        end = pos + 12 + length
        if end > len(data):
            raise ValueError("truncated PNG chunk")
        if kind not in _PNG_METADATA:
            out += data[pos:end]
        pos = end
        if kind == b"IEND":
            break
    return bytes(out)


def _strip_webp(data: bytes) -> bytes:
    chunks = bytearray()
    pos = 12
    while pos + 8 <= len(data):
        kind = data[pos:pos + 4]
        (length,) = struct.unpack("<I", data[pos + 4:pos + 8])
        end = pos + 8 + length + (length & 1)
        if end > len(data) + (length & 1):
            raise ValueError("truncated WebP chunk")
        chunk = bytearray(data[pos:end])
        if kind == b"VP8X":
            chunk[8] &= ~0x0C  # the header's EXIF (0x08) and XMP (0x04) flags: those chunks are gone
        if kind not in _WEBP_METADATA:
            chunks += chunk
        pos = end
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WEBP" + bytes(chunks)


def pseudonymise_author(key: SecretStr, source: str, author: str) -> str:
    """A stable pseudonym of ``author`` within ``source``: HMAC-SHA256 under ``key`` (``u-`` + 16 hex).

    The same author gets the same pseudonym (per-author statistics still work), but without the key nobody can
    test a guessed name against it, as they could against a plain hash of a public user name.
    """
    message = f"{source}:{author or 'anonymous'}".encode()
    return "u-" + hmac.new(key.get_secret_value().encode(), message, hashlib.sha256).hexdigest()[:16]
