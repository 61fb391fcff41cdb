"""Reviewer passwords (scrypt, per-user salt, constant-time check), the accounts file, `next` targets and the
image address rules of the review app: pure functions, no services."""

from __future__ import annotations

import stat

import pytest

from tagwatch.errors import ConfigError
from tagwatch.review.auth import Accounts, csrf_matches, hash_password, safe_next, verify_password
from tagwatch.review.images import ImageRefused, check_image_address, content_type, image_path


def test_hash_format_and_check():
    stored = hash_password("s3cret-passw0rd")
    scheme, n, r, p, salt, digest = stored.split("$")
    assert (scheme, n, r, p) == ("scrypt", "16384", "8", "1") and salt and digest
    assert verify_password("s3cret-passw0rd", stored)
    assert not verify_password("s3cret-passw0rD", stored)
    assert not verify_password("", stored)


def test_each_hash_has_its_own_salt():
    a, b = hash_password("same password"), hash_password("same password")
    assert a != b and a.split("$")[4] != b.split("$")[4]
    assert verify_password("same password", a) and verify_password("same password", b)


@pytest.mark.parametrize("stored", ["", "plain", "md5$1$2$3$aa$bb", "scrypt$x$8$1$AAAA$AAAA",
                                    "scrypt$16384$8$1$!!notb64$AAAA",
                                    "scrypt$4194304$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAA"])  # n too large: refused
def test_malformed_or_abusive_hashes_never_match(stored):
    assert verify_password("anything", stored) is False


def test_accounts_file_add_authenticate_and_mode(tmp_path):
    path = tmp_path / "sub" / "accounts.yaml"
    accounts = Accounts(path)
    assert accounts.add("alice", "long enough pw") is True
    assert accounts.add("bob", "another password") is True
    assert accounts.add("alice", "a new password") is False  # replaced
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert "a new password" not in text and "long enough pw" not in text and "scrypt$" in text
    assert accounts.authenticate("alice", "a new password")
    assert not accounts.authenticate("alice", "long enough pw")
    assert not accounts.authenticate("carol", "a new password")
    assert not accounts.authenticate("../alice", "a new password")


@pytest.mark.parametrize("name, password", [("", "long enough"), ("a b", "long enough"), ("-x", "long enough"),
                                            ("alice", "short")])
def test_bad_names_and_short_passwords_are_refused(tmp_path, name, password):
    with pytest.raises(ConfigError):
        Accounts(tmp_path / "a.yaml").add(name, password)


def test_a_broken_accounts_file_is_a_config_error(tmp_path):
    path = tmp_path / "a.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="name -> hash"):
        Accounts(path).authenticate("alice", "x")


@pytest.mark.parametrize("target, expected", [
    ("/review/next", "/review/next"), ("/?empty=1", "/?empty=1"), (None, "/"), ("", "/"),
    ("//evil.example", "/"), ("/\\evil.example", "/"), ("https://evil.example", "/"), ("evil.example", "/"),
    ("javascript:alert(1)", "/"), ("/\t/evil.example", "/"), ("/ok\\..", "/"),
])
def test_safe_next(target, expected):
    assert safe_next(target) == expected


def test_csrf_compare():
    assert csrf_matches("abc", "abc")
    assert not csrf_matches("abc", "abd") and not csrf_matches(None, "") and not csrf_matches("", "")
    assert not csrf_matches("abc", None) and not csrf_matches("abc", ["abc"])


@pytest.mark.parametrize("bucket, key", [
    ("ledger", "images/new/ab.jpg"), ("posts", "decisions/p1.json"), ("posts", "images/../decisions/p1.json"),
    ("posts", "images/./x.jpg"), ("posts", "images//x.jpg"), ("posts", "/images/x.jpg"), ("posts", "images/%2e%2e/x"),
    ("posts", "images/a\\..\\b.jpg"), ("posts", "images/"), ("posts", "images"), ("posts", "images/x:y.jpg"),
    ("posts", "images/.hidden/x.jpg"),
])
def test_image_addresses_outside_the_posts_images_are_refused(bucket, key):
    with pytest.raises(ImageRefused):
        check_image_address(bucket, key, posts_bucket="posts")


def test_image_addresses_tagwatch_writes_are_accepted():
    for key in ("images/new/" + "a" * 64 + ".jpg", "images/openclipart/" + "0" * 64 + ".jpg", "images/test/x_1.png"):
        check_image_address("posts", key, posts_bucket="posts")
    assert image_path("s3://posts/images/new/ab.jpg") == "/images/posts/images/new/ab.jpg"
    assert image_path("https://elsewhere/x.jpg") is None


def test_only_image_bytes_are_served():
    assert content_type(b"\x89PNG\r\n\x1a\n....") == "image/png"
    assert content_type(b"\xff\xd8\xff\xe0") == "image/jpeg"
    assert content_type(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    for data in (b"<html>", b"<svg xmlns='http://www.w3.org/2000/svg'/>", b""):
        with pytest.raises(ImageRefused):
            content_type(data)


def test_serve_refuses_the_default_session_secret_off_loopback():
    from tagwatch.review.serve import check_serving_settings
    from tagwatch.settings import load_settings

    check_serving_settings(load_settings())  # 127.0.0.1: the local default is fine
    with pytest.raises(ConfigError, match="default session secret"):
        check_serving_settings(load_settings(http={"bind_host": "0.0.0.0"}))
    check_serving_settings(load_settings(http={"bind_host": "0.0.0.0"}, review={"session_secret": "s" * 48}))


def test_the_review_cli_is_registered_with_examples():
    from typer.testing import CliRunner

    from tagwatch.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["review", "--help"])
    assert result.exit_code == 0 and "serve" in result.output and "add-user" in result.output
    for command in ("serve", "add-user", "queue"):
        result = runner.invoke(app, ["review", command, "--help"])
        assert result.exit_code == 0 and "Example" in result.output, command
