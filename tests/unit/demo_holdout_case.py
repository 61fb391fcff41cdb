"""A small constructed demo run whose holdout figures are worked out by hand (test_demo_holdout.py and
test_demo_report.py share it).

20 decided posts + 1 dead-lettered; weapons acts (review >= 0.5, remove >= 0.9), alcohol is in monitor mode
(hits >= 0.6). The manifest sends positives to the holdout at 0.4 and other posts at 0.1, so a positive weighs
2.5 and another post 10: 5 positives (12.5) + 15 others (150) = 162.5.
"""

from __future__ import annotations

import types
from datetime import datetime, timedelta, timezone

from tagwatch.data.manifest import SplitRates
from tagwatch.demo.summary import PublishedPost

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
NEVER = 1.0 + 1e-6
POLICY = {
    "schema_version": 2, "version": "policy-test", "decision_rule": "strictest action wins",
    "constraints": {"review_budget": 0.05, "remove_precision": 0.95, "confidence": 0.95, "min_positives": 10},
    "categories": {
        "weapons": {"mode": "act", "review_threshold": 0.5, "remove_threshold": 0.9, "monitor_threshold": None,
                    "reason": "remove: precision lower bound >= 0.95; review: the budget bought recall here",
                    "remove": {"enabled": True, "reason": "precision lower bound >= 0.95"}},
        "alcohol": {"mode": "monitor", "review_threshold": NEVER, "remove_threshold": NEVER, "monitor_threshold": 0.6,
                    "reason": "4 calibration positives < 10 needed to act: scored and counted, never actioned"},
    },
}
MANIFEST = types.SimpleNamespace(split_rates=SplitRates(positive={"train": 0.4, "val": 0.2, "holdout": 0.4},
                                                        negative={"train": 0.8, "val": 0.1, "holdout": 0.1}))
CATEGORIES = ["weapons", "alcohol"]


def build_case() -> tuple[list[PublishedPost], dict[str, dict], dict[str, str]]:
    """(published, decisions, dead letters)."""
    rows = [  # (truth, weapons score, alcohol score, action)
        (["weapons"], 0.95, 0.1, "remove"), (["weapons"], 0.92, 0.1, "remove"), (["weapons"], 0.7, 0.1, "review"),
        (["weapons"], 0.3, 0.1, "allow"), (["alcohol"], 0.1, 0.8, "allow"), (["other"], 0.6, 0.1, "review"),
        (["other"], 0.1, 0.7, "allow"),
        (["other"], 0.1, 0.1, "review"),  # a bank match: reviewed whatever the scores say
        *[(["other"], 0.1, 0.1, "allow")] * 12,
    ]
    published, decisions = [], {}
    for i, (truth, weapons, alcohol, action) in enumerate(rows):
        pid = f"p{i}.r"
        published.append(PublishedPost(pid, f"p{i}", truth, f"s3://posts/{i}.jpg"))
        reasons = [f"monitor:alcohol>=0.600 ({alcohol:.3f}; not actioned)"] if alcohol >= 0.6 else []
        decisions[pid] = {"action": action, "scores": {"weapons": weapons, "alcohol": alcohol}, "reasons": reasons,
                          "latency_ms": 10.0 + i, "decided_at": (T0 + timedelta(seconds=1 + i % 5)).isoformat()}
    published.append(PublishedPost("p20.r", "p20", ["weapons"], "s3://posts/20.jpg"))
    return published, decisions, {"p20.r": "undecodable_image"}
