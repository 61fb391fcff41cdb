"""Logging set-up: rich to stderr, and a filter that masks every configured secret in every record.

SecretStr already keeps secrets out of reprs; the filter is the second line of defence for messages that
interpolate a URL, an exception text or a child process's output.
"""

from __future__ import annotations

import logging

from rich.console import Console
from rich.logging import RichHandler

MASK = "**********"


class RedactSecrets(logging.Filter):
    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        # Longest first, so a secret that contains another is masked whole.
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            record.msg = self.redact(record.getMessage())
            record.args = None
            if record.exc_info and record.exc_info[1] is not None:
                record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
                record.exc_info = None
        return True


def configure_logging(level: str, secrets: list[str]) -> None:
    """Route the ``tagwatch`` logger to stderr through rich, secrets masked."""
    handler = RichHandler(console=Console(stderr=True), show_path=False, rich_tracebacks=False)
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger("tagwatch")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
