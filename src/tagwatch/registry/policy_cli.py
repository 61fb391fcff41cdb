"""`tagwatch policy ...`: list, show, diff, register, calibrate, promote, rollback policy versions.

Plain text (or ``--json``) on stdout, never through a rich console (it wraps lines when stdout is not a terminal).
The logic is in registry/policies.py, policy_diff.py and policy_calibration.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from tagwatch.cli_context import cli_settings
from tagwatch.output import emit_json

EXIT_CODES = ("Exit codes: 0 done; 3 invalid policy file or calibration input (ConfigError); 11 unknown version "
              "or alias, or a policy for another model than the model alias serves (RegistryError); 12 a stored "
              "file that fails its sha256 (IntegrityError).")


ReasonOption = Annotated[str, typer.Option(help="Why: recorded in the version's metadata.")]
PromoteOption = Annotated[Optional[str], typer.Option(help="Also promote it to this alias.")]


def _epilog(example: str) -> str:
    return f"Example: {example}\n\n{EXIT_CODES}"


policy_app = typer.Typer(
    help="Policy versions in the registry: thresholds with their own aliases, calibrated for one model version. "
         "Consumers apply the policy alias named like their model alias (production) within "
         "settings.moderation.policy_poll_s, without a restart.", no_args_is_help=True)


def _store(ctx: typer.Context):
    from tagwatch.registry.policies import open_policies
    from tagwatch.stack import with_stack_endpoints

    return open_policies(with_stack_endpoints(cli_settings(ctx)))


def _write(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


@policy_app.command("list", epilog=_epilog("tagwatch policy list --json"))
def policy_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every policy version with its aliases and the model version it was calibrated for."""
    store = _store(ctx)
    versions = store.list_versions()
    by_number: dict[int, list[str]] = {}
    for name, record in sorted(store.aliases().items()):
        by_number.setdefault(record.version, []).append(name)
    rows = [{"number": v.number, "policy_id": v.policy_id, "aliases": by_number.get(v.number, []),
             "model_version": v.model_version, "source": v.source, "created_at": v.created_at.isoformat(),
             "parent": v.parent, "reason": v.reason} for v in versions]
    if as_json:
        emit_json(rows)
        return
    if not rows:
        _write(f"{store.model_name} has no policy versions (`tagwatch policy register` / `calibrate`)")
    for r in rows:
        _write(f"{r['number']:>4}  {r['policy_id']:<32} aliases={','.join(r['aliases']) or '-':<12} "
               f"model_version={r['model_version']:<4} source={r['source']:<10} {r['created_at'][:19]}  {r['reason']}")


@policy_app.command("show", epilog=_epilog("tagwatch policy show production"))
def policy_show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="Policy version number, alias or `latest`.")] = "production",
    as_json: Annotated[bool, typer.Option("--json", help="Print metadata and the policy document as JSON.")] = False,
) -> None:
    """Thresholds per category and the model version the policy was calibrated for."""
    from tagwatch.registry.policy_diff import FIELDS, describe_threshold, rule_of

    metadata, document = _store(ctx).read(ref)
    if as_json:
        emit_json({"metadata": metadata.model_dump(mode="json"), "policy": document})
        return
    _write(f"{metadata.policy_id} (policy version {metadata.number}, source {metadata.source}, from "
           f"{metadata.derived_from or '-'})")
    _write(f"calibrated for {metadata.model_name} version {metadata.model_version} (model.onnx sha256 "
           f"{metadata.model_sha256[:12]}…)")
    if metadata.constraints:
        _write("constraints: " + ", ".join(f"{k}={v}" for k, v in sorted(metadata.constraints.items())))
    _write(f"{'category':<16}" + "".join(f"{f.replace('_threshold', ''):>10}" for f in FIELDS))
    for name in document.get("categories", {}):
        rule = rule_of(document, name)
        _write(f"{name:<16}{rule['mode']:>10}" + "".join(f"{describe_threshold(rule[f]):>10}" for f in FIELDS[1:])
               + (f"  reads {', '.join(rule['inputs'])}" if rule["inputs"] else ""))


@policy_app.command("diff", epilog=_epilog("tagwatch policy diff production latest --json"))
def policy_diff(
    ctx: typer.Context,
    a: Annotated[str, typer.Argument(help="Policy version number, alias or `latest` (before).")],
    b: Annotated[str, typer.Argument(help="Policy version number, alias or `latest` (after).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Per category: mode and review / remove / monitor threshold changes from A to B."""
    from tagwatch.registry.policy_diff import diff_policies

    store = _store(ctx)
    (meta_a, doc_a), (meta_b, doc_b) = store.read(a), store.read(b)
    rows = diff_policies(doc_a, doc_b)
    if as_json:
        emit_json({"a": meta_a.policy_id, "b": meta_b.policy_id, "a_model_version": meta_a.model_version,
                   "b_model_version": meta_b.model_version, "categories": rows})
        return
    _write(f"{meta_a.policy_id} (model version {meta_a.model_version}) -> {meta_b.policy_id} "
           f"(model version {meta_b.model_version})")
    for row in rows:
        changes = ", ".join(
            f"{field}: {_show(old)} -> {_show(new)}" for field, (old, new) in row["changes"].items())
        _write(f"{row['category']:<16}{row['status']:<8} {changes}".rstrip())


def _show(value: Any) -> str:
    from tagwatch.registry.policy_diff import describe_threshold

    return value if isinstance(value, str) else describe_threshold(value)


@policy_app.command("register", epilog=_epilog("tagwatch policy register policy.json --model-version 3 "
                                               "--reason 'stricter weapons review' --alias production"))
def policy_register(
    ctx: typer.Context,
    model_version: Annotated[int, typer.Option(help="The model version its thresholds were calibrated for.")],
    file: Annotated[Optional[Path], typer.Argument(
        help="A policy.json (schema policy.v2.json), e.g. a hand-edited one [default: the model version's own "
             "policy.json, source model-version].")] = None,
    reason: ReasonOption = "",
    alias: PromoteOption = None,
) -> None:
    """Import a policy file (or the model version's own policy) as the next policy version, schema-checked."""
    from tagwatch.errors import ConfigError
    from tagwatch.registry.serving_view import read_serving_view

    store = _store(ctx)
    if file is None:
        document, source = read_serving_view(store.models, model_version).policy, "model-version"
        if document is None:
            raise ConfigError(f"{store.model_name} version {model_version} has no policy.json of its own",
                              hint="pass a policy FILE, or `tagwatch policy calibrate --model-version "
                                   f"{model_version}`")
    else:
        try:
            document, source = json.loads(file.read_text(encoding="utf-8")), "import"
        except (OSError, ValueError) as error:
            raise ConfigError(f"policy file {file} is unreadable: {str(error)[:200]}",
                              hint="pass a policy.json (`tagwatch policy show --json` prints one)") from error
    metadata = store.register(document, model_version=model_version, source=source, reason=reason, alias=alias)
    _write(f"registered {metadata.policy_id} (policy version {metadata.number}) for model version "
           f"{metadata.model_version}" + (f"; {alias} -> {metadata.number}" if alias else ""))


@policy_app.command("calibrate", epilog=_epilog("tagwatch policy calibrate --model-version 3 --review-budget 0.03 "
                                                "--alias production"))
def policy_calibrate(
    ctx: typer.Context,
    model_version: Annotated[int, typer.Option(help="Registered model version to calibrate for.")],
    review_budget: Annotated[Optional[float], typer.Option(help="Largest share of posts sent to review.")] = None,
    remove_precision: Annotated[Optional[float], typer.Option(
        help="Auto-remove only where the CI lower bound of precision reaches this.")] = None,
    confidence: Annotated[Optional[float], typer.Option(help="Confidence of every interval.")] = None,
    min_positives: Annotated[Optional[int], typer.Option(help="Fewer calibration positives: monitor mode.")] = None,
    dataset: Annotated[Optional[str], typer.Option(
        help="NAME/VERSION of the dataset the model was trained on [default: the one its policy was calibrated "
             "on].")] = None,
    reason: ReasonOption = "",
    alias: PromoteOption = None,
) -> None:
    """Score the val split of the model's dataset with its ONNX and register new operating points.

    Constraints not given keep the values of the model version's own policy (else the calibrator's defaults).
    """
    from tagwatch.registry.policies import open_policies
    from tagwatch.registry.policy_calibration import calibrate_policy
    from tagwatch.stack import with_stack_endpoints

    settings = with_stack_endpoints(cli_settings(ctx))
    overrides = {"review_budget": review_budget, "remove_precision": remove_precision, "confidence": confidence,
                 "min_positives": min_positives}
    metadata = calibrate_policy(settings, open_policies(settings), model_version=model_version, overrides=overrides,
                                dataset=dataset, alias=alias, reason=reason)
    _write(f"registered {metadata.policy_id} (policy version {metadata.number}) calibrated for model version "
           f"{metadata.model_version}: " + ", ".join(f"{k}={v}" for k, v in sorted(metadata.constraints.items()))
           + (f"; {alias} -> {metadata.number}" if alias else ""))


@policy_app.command("promote", epilog=_epilog("tagwatch policy promote 4 --alias production"))
def policy_promote(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="Policy version number, alias or `latest`.")],
    alias: Annotated[str, typer.Option(help="Policy alias to move (named like the model alias it serves).")] = "production",
    reason: Annotated[str, typer.Option(help="Recorded in the alias.")] = "",
) -> None:
    """Point a policy alias at a version; refused unless it was calibrated for the model the model alias serves."""
    record = _store(ctx).promote(ref, alias=alias, reason=reason)
    was = f" (was {record.previous[0]})" if record.previous else ""
    _write(f"policy {alias} -> policy version {record.version}{was}")


@policy_app.command("rollback", epilog=_epilog("tagwatch policy rollback --alias production"))
def policy_rollback(
    ctx: typer.Context,
    alias: Annotated[str, typer.Option(help="Policy alias to move back.")] = "production",
) -> None:
    """Move a policy alias back to the version it named before (checked like a promote)."""
    record = _store(ctx).rollback(alias)
    _write(f"policy {alias} rolled back to policy version {record.version}")
