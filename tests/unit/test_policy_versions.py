"""Policy versions without S3: the diff, the schema check, calibration inputs, and the consumers' policy source
(which policy decides a batch, when it reloads, what it refuses)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from tagwatch.errors import ConfigError, RetryableError
from tagwatch.moderation.events import ModelRef
from tagwatch.moderation.metrics import StreamMetrics
from tagwatch.moderation.policy import Policy
from tagwatch.moderation.policy_source import PolicySource
from tagwatch.registry.policies import check_document
from tagwatch.registry.policy_calibration import constraints_for, dataset_spec_of
from tagwatch.registry.policy_diff import diff_policies
from tagwatch.settings import load_settings
from tests.support.policies import policy_document

CATS = ["weapons", "violence", "alcohol"]


def test_diff_names_each_changed_field_per_category_and_added_or_removed_ones():
    a = policy_document(CATS, review=0.5, remove=0.9)
    b = policy_document(CATS[:2] + ["drugs"], review=0.5, remove=0.9)
    b["categories"]["weapons"]["review_threshold"] = 0.4
    b["categories"]["violence"]["mode"] = "monitor"
    rows = {r["category"]: r for r in diff_policies(a, b)}
    assert rows["weapons"]["status"] == "changed" and rows["weapons"]["changes"] == {"review_threshold": [0.5, 0.4]}
    assert rows["violence"]["changes"] == {"mode": ["act", "monitor"]}
    assert rows["alcohol"]["status"] == "removed" and rows["alcohol"]["changes"]["remove_threshold"] == [0.9, None]
    assert rows["drugs"]["status"] == "added" and rows["drugs"]["changes"]["mode"] == [None, "act"]
    assert [r["category"] for r in diff_policies(a, b)] == ["weapons", "violence", "alcohol", "drugs"]


def test_diff_of_a_policy_with_itself_is_all_same_and_never_thresholds_compare_equal():
    a = policy_document(CATS, remove=1.000001)
    b = policy_document(CATS, remove=1.5)  # both "never remove"
    assert {r["status"] for r in diff_policies(a, a)} == {"same"}
    assert {r["status"] for r in diff_policies(a, b)} == {"same"}


def test_an_invalid_policy_is_a_config_error_naming_where():
    check_document(policy_document(CATS) | {"derived_from": "policy-run-1"})  # valid, with the registry's field
    broken = policy_document(CATS)
    broken["categories"]["weapons"]["mode"] = "delete"
    with pytest.raises(ConfigError, match="categories/weapons/mode") as raised:
        check_document(broken)
    assert raised.value.exit_code == 3 and raised.value.hint
    with pytest.raises(ConfigError, match="JSON object"):
        check_document(["not", "a", "policy"])


def test_the_calibration_dataset_is_read_from_the_versions_policy():
    assert dataset_spec_of({"calibration": {"dataset": "memory://synthetic:64"}}, datasets_bucket="d") == "synthetic:64"
    assert dataset_spec_of({"calibration": {"dataset": "s3://d/openclipart/v3"}}, datasets_bucket="d") == "openclipart/v3"
    assert dataset_spec_of({"calibration": {"dataset": "s3://other/openclipart/v3"}}, datasets_bucket="d") is None
    assert dataset_spec_of({"version": "p", "categories": {}}, datasets_bucket="d") is None
    assert dataset_spec_of(None, datasets_bucket="d") is None


def test_constraints_keep_the_versions_own_unless_overridden():
    base = {"review_budget": 0.02, "remove_precision": 0.9, "confidence": 0.9, "min_positives": 5, "interval": "w"}
    c = constraints_for(base, {"review_budget": 0.1, "confidence": None})
    assert (c.review_budget, c.remove_precision, c.confidence, c.min_positives) == (0.1, 0.9, 0.9, 5)
    assert constraints_for(None, {}).review_budget == 0.05  # the calibrator's default


def test_policy_poll_setting_has_a_default_and_refuses_zero():
    assert load_settings().moderation.policy_poll_s == 5.0
    with pytest.raises(Exception):
        load_settings(moderation={"policy_poll_s": 0})


class Store:
    """The two reads PolicySource makes of a PolicyStore, over a dict (the S3 store itself: integration tests)."""

    def __init__(self):
        self.alias: bytes | None = None
        self.policies: dict[bytes, tuple] = {}
        self.gets = 0
        self.fail = False

    def point(self, raw: bytes, *, number: int, model_sha: str, review: float):
        meta = SimpleNamespace(policy_id=f"m-policy-{number}", number=number, model_version=number,
                               model_name="m", model_sha256=model_sha)
        self.policies[raw] = (meta, policy_document(CATS, review=review) | {"version": meta.policy_id})
        self.alias = raw

    def alias_bytes(self, alias):
        from botocore.exceptions import EndpointConnectionError

        self.gets += 1
        if self.fail:
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
        return self.alias

    def read(self, alias):
        return self.policies[self.alias]


MODEL = ModelRef(name="m", version="1", sha256="a" * 64)
EMBEDDED = Policy.model_validate({"version": "policy-1", "categories": {}})


def _source(store, metrics=None):
    clock = SimpleNamespace(now=0.0)
    return PolicySource(store, "production", poll_s=5.0, metrics=metrics, clock=lambda: clock.now), clock


def test_no_policy_alias_means_the_served_versions_own_policy():
    source, _ = _source(Store())
    assert source.current(MODEL, EMBEDDED) is EMBEDDED


def test_a_promoted_policy_decides_after_the_next_poll_and_the_alias_is_read_at_most_every_poll_s():
    store = Store()
    store.point(b"r1", number=1, model_sha=MODEL.sha256, review=0.5)
    source, clock = _source(store)
    assert source.current(MODEL, EMBEDDED).version == "m-policy-1"
    store.point(b"r2", number=2, model_sha=MODEL.sha256, review=0.3)
    clock.now = 4.9
    assert source.current(MODEL, EMBEDDED).version == "m-policy-1" and store.gets == 1  # within the interval
    clock.now = 5.0
    chosen = source.current(MODEL, EMBEDDED)
    assert chosen.version == "m-policy-2" and chosen.categories["weapons"].review_threshold == 0.3
    assert store.gets == 2
    store.alias = None  # the alias deleted: back to the version's own
    clock.now = 10.0
    assert source.current(MODEL, EMBEDDED) is EMBEDDED


def test_a_policy_for_another_model_is_refused_logged_once_and_counted_per_batch(caplog):
    store, metrics = Store(), StreamMetrics()
    store.point(b"r1", number=7, model_sha="b" * 64, review=0.5)
    source, _ = _source(store, metrics)
    with caplog.at_level(logging.ERROR, logger="tagwatch.moderation.policy_source"):
        assert source.current(MODEL, EMBEDDED) is EMBEDDED
        assert source.current(MODEL, EMBEDDED) is EMBEDDED
    refusals = [r for r in caplog.records if "refusing policy m-policy-7" in r.getMessage()]
    assert len(refusals) == 1 and "serves version 1" in refusals[0].getMessage()
    assert metrics.registry.get_sample_value("tagwatch_policy_refused_total", {"policy": "m-policy-7"}) == 2
    other = ModelRef(name="m", version="7", sha256="b" * 64)  # the model it was calibrated for: applied
    assert source.current(other, EMBEDDED).version == "m-policy-7"


def test_an_unreadable_alias_makes_the_batch_retry_instead_of_deciding_with_a_stale_policy():
    store = Store()
    store.fail = True
    source, _ = _source(store)
    with pytest.raises(RetryableError, match="policy alias 'production' unreadable"):
        source.current(MODEL, EMBEDDED)
