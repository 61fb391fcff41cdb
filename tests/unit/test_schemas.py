import json

import jsonschema

from tagwatch.schemas import SCHEMA_DIR as SCHEMAS
from tagwatch.schemas import registry, render


def test_committed_schemas_match_the_models():
    for filename, model in registry().items():
        path = SCHEMAS / filename
        assert path.exists(), f"{filename} missing: run python -m tagwatch.schemas"
        assert path.read_text() == render(model, filename), f"{filename} drifted: run python -m tagwatch.schemas"


def test_a_decision_event_validates_against_its_schema():
    from tagwatch.moderation.events import Decision, ModelRef

    decision = Decision(decision_id="d" * 32, post_id="p1", action="review", scores={"weapons": 0.7},
                        reasons=["policy:weapons>=0.500 (0.700)"], model=ModelRef(name="m", version="3", sha256="0" * 64),
                        policy_version="p1", decided_at="2026-11-29T00:00:00Z", latency_ms=12.5)
    schema = json.loads((SCHEMAS / "moderation-decision.v1.json").read_text())
    jsonschema.validate(json.loads(decision.model_dump_json()), schema)
    bad = json.loads(decision.model_dump_json()) | {"action": "delete"}
    try:
        jsonschema.validate(bad, schema)
    except jsonschema.ValidationError:
        pass
    else:
        raise AssertionError("an unknown action validated")
