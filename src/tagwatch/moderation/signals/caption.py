"""``caption.offensive``: offensive language in the caption, by alt-profanity-check's linear model.

The package ships its model (a TF-IDF vectoriser and a calibrated linear SVM, scikit-learn, joblib files inside the
wheel); nothing is downloaded. It is loaded once per process (the import loads it) and scores a batch of captions in
one vectorised call (40-135 us a caption in a batch of 128 here, benchmarks/caption_signals.py).

What it catches: English profanity, slurs and insults, the vocabulary it was trained on (crowd-labelled tweets and
Wikipedia comments). What it does not: hate said politely or in code words ("those people should go back"),
dog whistles and numbers, misspellings it never saw, languages other than English, and any text inside the
image. It also flags friendly swearing. So it is an *offensive-language* signal, not a hate-speech detector;
docs/policy.md says so next to its rule.
"""

from __future__ import annotations

from collections.abc import Sequence

from tagwatch.errors import ConfigError
from tagwatch.moderation.events import SignalScore
from tagwatch.moderation.policy import CategoryRule

CATEGORY = "offensive_text"
PACKAGE = "alt-profanity-check"


class OffensiveCaption:
    name = "caption.offensive"
    rules = {CATEGORY: CategoryRule(
        mode="monitor", monitor_threshold=0.9, inputs=(f"caption.offensive:{CATEGORY}",),
        reason="no labelled captions to calibrate on: recorded and counted, never actioned until a policy names "
               "offensive_text")}

    def __init__(self) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            from profanity_check import predict_prob
        except ImportError as error:
            raise ConfigError(f"the caption.offensive signal needs {PACKAGE}: {error}",
                              hint="pip install 'tagwatch[text]', or leave caption.offensive out of "
                                   "TAGWATCH_MODERATION__SIGNALS") from error
        try:
            self.version = f"{PACKAGE}=={version(PACKAGE)}"
        except PackageNotFoundError:  # vendored or renamed: still name the model
            self.version = f"{PACKAGE}==unknown"
        self._predict_prob = predict_prob

    def score(self, texts: Sequence[str]) -> list[SignalScore]:
        index = [i for i, text in enumerate(texts) if text and text.strip()]
        probs = self._predict_prob([texts[i] for i in index]) if index else []
        out = [SignalScore(name=self.name, version=self.version, scores={CATEGORY: 0.0}, detail="no caption")
               for _ in texts]
        for i, prob in zip(index, probs, strict=True):
            out[i] = SignalScore(name=self.name, version=self.version, scores={CATEGORY: round(float(prob), 4)})
        return out
