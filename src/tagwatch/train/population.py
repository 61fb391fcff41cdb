"""Population weights: figures for the traffic as it arrives, from splits that over-sample positives.

The data build sends posts in a moderation category to val and holdout at a higher rate than other posts
(``DatasetManifest.split_rates``), so a split's raw review rate or precision overstates what the stream will see.
Weighting each post by 1 / (its class's rate into its split) undoes that: rates, precision and the review budget
are then estimated for natural traffic. Recall is unchanged (all positives of a class weigh the same).
"""

from __future__ import annotations

from typing import Any

import numpy as np

NATURAL = "natural traffic (posts weighted by 1 / their class's split rate)"
AS_SAMPLED = "the split as sampled (the dataset records no split rates)"


def moderation_positive(targets: np.ndarray, category_names: list[str], other: str = "other") -> np.ndarray:
    """Posts in at least one moderation category (what the build's split assignment calls positive)."""
    columns = [j for j, name in enumerate(category_names) if name != other]
    if not columns:
        return np.zeros(len(targets), dtype=bool)
    return np.asarray(targets)[:, columns].max(axis=1) > 0


def split_weights(manifest: Any, splits: list[str] | np.ndarray, positive: np.ndarray) -> tuple[np.ndarray | None, str]:
    """Weights per post (``splits[i]`` names post i's split) and the population they represent; (None, AS_SAMPLED)
    when the manifest has no split rates.

    Within a class, posts of every split are drawn alike, so only the class mix needs fixing: each class's weight
    is 1 / (the sum of its rates into the splits present). For one split that is 1 / its rate; for train + val it
    avoids the extra variance (a smaller effective sample) of weighting train and val posts differently."""
    rates = getattr(manifest, "split_rates", None)
    if rates is None:
        return None, AS_SAMPLED
    present = sorted({str(s) for s in np.unique(np.asarray(splits))})
    positive_rate = sum(rates.positive[s] for s in present)
    negative_rate = sum(rates.negative[s] for s in present)
    weights = np.where(np.asarray(positive, dtype=bool), 1.0 / max(positive_rate, 1e-9), 1.0 / max(negative_rate, 1e-9))
    return weights.astype(float), NATURAL
