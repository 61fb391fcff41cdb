"""What the root `tagwatch` callback hands every sub-command through typer's context.

The root callback (``tagwatch.cli.root``) stores one ``CliContext`` in ``ctx.obj``: the global flags
(``--config``, ``--state-dir``, ``-v``) and the process's one Settings object. Sub-CLIs read it with
``cli_settings(ctx)``; they never import ``tagwatch.cli`` (which imports them: that was an import cycle).

The Settings object is built on first use, once, and reused by every later call. Not in the callback itself,
because typer runs the root callback before a sub-command's ``--help`` and before commands that need no
settings (``manifests validate``, ``pipeline compile``): they must keep working with a broken config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer

from tagwatch.logs import RedactSecrets, configure_logging
from tagwatch.settings import Settings, load_settings


@dataclass
class CliContext:
    config: Path | None = None
    state_dir: Path | None = None
    verbose: bool = False
    redactor: RedactSecrets = field(default_factory=lambda: RedactSecrets([]))
    _settings: Settings | None = field(default=None, repr=False)

    def settings(self, **overrides: Any) -> Settings:
        """The process's one Settings object: YAML < env < flags.

        Args:
            overrides: a command's own flags as nested section dicts (``stack={"s3_port": 18333}``; None values
                are dropped). They shape the first build only, so only the command that builds first passes them.
        """
        if self._settings is None:
            paths = {"state_dir": self.state_dir} if self.state_dir else {}
            settings = load_settings(self.config, paths=paths, **overrides)
            configure_logging("DEBUG" if self.verbose else settings.log_level, settings.secret_values())
            self.redactor = RedactSecrets(settings.secret_values())
            self._settings = settings
        return self._settings


def cli_context(ctx: typer.Context) -> CliContext:
    """The root callback's context object (a default one when a sub-app runs on its own, as in tests)."""
    return ctx.ensure_object(CliContext)


def cli_settings(ctx: typer.Context, **overrides: Any) -> Settings:
    """The process's Settings, built once (see ``CliContext.settings``)."""
    return cli_context(ctx).settings(**overrides)
