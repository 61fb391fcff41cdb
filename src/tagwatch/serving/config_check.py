"""Does a running Triton serve the registered config? ``compare`` what it reports against ``config.pbtxt``.

Works against any Triton that speaks the KServe v2 HTTP protocol: the local PyTriton server or a cluster's
KServe Triton runtime (``GET /v2/models/<name>/config`` returns the model config as JSON). The comparison is
over ``model_config.ServedConfig``'s fields, the same ones the local server derives its binding from.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from tagwatch.errors import ServingError
from tagwatch.export.triton_layout import CONFIG_FILE, model_config_proto
from tagwatch.registry.serving_view import read_version_file
from tagwatch.serving.model_config import ServedConfig, differences, parse_registered_config


def fetch_served_config(url: str, model_name: str, *, timeout_s: float = 10.0) -> dict:
    """The model config a Triton at ``url`` (``host:port`` or ``http://host:port``) reports for ``model_name``."""
    base = url if "://" in url else f"http://{url}"
    try:
        with urllib.request.urlopen(f"{base}/v2/models/{model_name}/config", timeout=timeout_s) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise ServingError(f"could not read the config of {model_name} from {base}: {error}",
                           hint="is Triton running there and serving that model?") from error


def served_model_config(served: dict):
    """A served config's JSON as Triton's ``ModelConfig`` protobuf.

    Fields this client's proto does not know are skipped: the server may be newer, and what it reports is read,
    not validated. int64 fields come as JSON strings or numbers depending on the server; both parse.
    """
    from google.protobuf import json_format

    return json_format.ParseDict(served, model_config_proto().ModelConfig(), ignore_unknown_fields=True)


def compare(served: dict, registered, *, extra_outputs: tuple[str, ...] = ()) -> list[str]:
    """Differences between a served config (Triton's JSON) and a registered ``ModelConfig``; empty when they agree.

    ``extra_outputs``: outputs the server may add (the local server's per-row ``model_version``).
    """
    have = ServedConfig.of(served_model_config(served)).without_outputs(extra_outputs)
    return differences(have, ServedConfig.of(registered))


def registered_config(registry, ref: str | int):
    """The registered config.pbtxt of a version (number, alias or ``latest``): sha256-checked, then parsed and
    validated; only that file is read (not the model)."""
    metadata, _ = registry.resolve(ref)
    path = f"repository/{metadata.model_name}/{CONFIG_FILE}"
    body = read_version_file(registry, metadata, path, required=True)
    return metadata.version, parse_registered_config(body.decode("utf-8"), model_name=metadata.model_name,
                                                     version=metadata.version)
