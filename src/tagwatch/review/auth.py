"""Reviewer accounts and the small security helpers of the web app: password hashes, the accounts file, CSRF
tokens, and the ``next`` target after sign-in.

Passwords are hashed with the standard library's scrypt and a per-user random salt, stored as
``scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>``; a check recomputes the hash with the stored parameters and compares
in constant time. The accounts file is YAML, ``name: hash``, one line per reviewer (`tagwatch review add-user`);
in a cluster it is mounted from the Secret ``tagwatch-review-accounts``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from tagwatch.errors import ConfigError

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1  # 16 MiB and ~50 ms per check here: slow for guessing, fine for sign-in
HASH_BYTES = 32
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# a well-formed hash that matches no password: an unknown name costs as much time as a wrong password
_DUMMY = f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${'A' * 22}==${'A' * 43}="


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    if not password:
        raise ValueError("an empty password")
    salt = salt if salt is not None else os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=HASH_BYTES)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches ``stored`` (constant-time compare; a malformed hash never matches)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        n_, r_, p_ = int(n), int(r), int(p)
        if not (2 <= n_ <= 2**20 and 1 <= r_ <= 32 and 1 <= p_ <= 16):  # refuse parameters that would exhaust us
            return False
        expected = base64.b64decode(digest, validate=True)
        actual = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt, validate=True), n=n_, r=r_, p=p_,
                                dklen=len(expected), maxmem=128 * r_ * n_ * p_ + 2**20)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


class Accounts:
    """The accounts file: read on each sign-in (a rotated Secret takes effect without a restart)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, str]:
        if not self.path.exists():
            return {}
        try:
            data = yaml.safe_load(self.path.read_text()) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"the review accounts file {self.path} is not valid YAML",
                              hint="it holds `name: scrypt$...` lines; rewrite it with `tagwatch review add-user`"
                              ) from error
        if not isinstance(data, dict):
            raise ConfigError(f"the review accounts file {self.path} is not a name -> hash mapping",
                              hint="rewrite it with `tagwatch review add-user NAME`")
        return {str(name): str(value) for name, value in data.items()}

    def authenticate(self, name: str, password: str) -> bool:
        stored = self.load().get(name) if NAME.match(name or "") else None
        ok = verify_password(password, stored or _DUMMY)
        return ok and stored is not None

    def add(self, name: str, password: str) -> bool:
        """Add or replace ``name``; True if it was new. The file is written 0600, atomically."""
        if not NAME.match(name):
            raise ConfigError(f"invalid reviewer name {name!r}",
                              hint="letters, digits, '.', '_' and '-', at most 64, starting with a letter or digit")
        if len(password) < 8:
            raise ConfigError("the password is shorter than 8 characters", hint="choose a longer one")
        accounts = self.load()
        new = name not in accounts
        accounts[name] = hash_password(password)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write("# tagwatch review accounts: name -> scrypt hash (tagwatch review add-user)\n")
            yaml.safe_dump(dict(sorted(accounts.items())), handle, default_flow_style=False)
        os.replace(tmp, self.path)
        return new


def accounts_path(settings) -> Path:
    return settings.review.accounts_file or settings.paths.state_dir / "review-accounts.yaml"


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_matches(session_token: str | None, form_token: object) -> bool:
    return bool(session_token) and isinstance(form_token, str) and hmac.compare_digest(session_token, form_token)


def safe_next(target: str | None, default: str = "/") -> str:
    """``target`` if it is a path on this site, else ``default``: never ``//host``, ``/\\host``, a scheme, or a
    control character (each of which a browser may turn into another site)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return default
    if any(ord(ch) < 0x20 or ch == "\\" for ch in target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    return target
