"""Signals: named, versioned scores per post that one policy combines (moderation/policy.py, docs/policy.md).

A signal has a ``name``, a ``version`` and per-category ``scores`` for each post, recorded on every decision as a
``SignalScore`` (events.py). The consumer knows four kinds:

  image              the served image model (Triton); its scores are also the decision's ``scores``
  caption.offensive  offensive-language classifier on the caption (alt-profanity-check, caption.py)
  caption.spam       transparent spam heuristics on the caption (spam.py)
  bank               a PDQ hash-bank match: the entry's category, with the entry's action (bank.py)

  image.nudity       Yahoo's open_nsfw, a second model on the same Triton (nudity.py; registry/open_nsfw.py)

Text signals (``TextSignal``) score a batch of captions at once, in the consumer, while the batch's images are
being fetched. Image signals (``ImageSignal``) prepare their input from each decoded image in the fetch workers,
then score each micro-batch the image model scores, as a request in flight beside the model's. Each signal brings a default rule (``rules``) for the categories it scores: monitor mode, so a
signal without calibration data is recorded and counted but never acts until a policy names the category.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from tagwatch.errors import ConfigError
from tagwatch.moderation.events import SignalScore
from tagwatch.moderation.policy import CategoryRule

TEXT_SIGNALS = ("caption.offensive", "caption.spam")
DEFAULT_SIGNALS = TEXT_SIGNALS
IMAGE_SIGNALS = ("image.nudity",)
KNOWN_SIGNALS = ("image", "bank", *TEXT_SIGNALS, *IMAGE_SIGNALS)  # what a policy rule's ``inputs`` may name


class TextSignal(Protocol):
    name: str
    version: str
    rules: dict[str, CategoryRule]

    def score(self, texts: Sequence[str]) -> list[SignalScore]:
        """One SignalScore per text, in order; called with a batch's captions."""
        ...


class ImageSignal(Protocol):
    name: str
    version: str
    rules: dict[str, CategoryRule]

    def prepare(self, image):
        """This signal's input (a numpy array) from one decoded image (PIL). Called in fetch workers: thread-safe."""
        ...

    def submit_batch(self, inputs):
        """Start scoring a micro-batch of prepared inputs (stacked); returns a future whose ``result()`` is one
        SignalScore per row. RetryableError there when the signal's server is unavailable (the batch is retried)."""
        ...


def build_text_signals(names: Sequence[str]) -> list[TextSignal]:
    """The text signals named (``TAGWATCH_MODERATION__SIGNALS`` / ConsumerOptions.signals), each loaded once."""
    signals: list[TextSignal] = []
    for name in names:
        if name == "caption.offensive":
            from tagwatch.moderation.signals.caption import OffensiveCaption

            signals.append(OffensiveCaption())
        elif name == "caption.spam":
            from tagwatch.moderation.signals.spam import SpamHeuristics

            signals.append(SpamHeuristics())
        else:
            raise ConfigError(f"unknown signal {name!r}", hint=f"known text signals: {', '.join(TEXT_SIGNALS)}")
    return signals


def build_image_signals(settings) -> list[ImageSignal]:
    """The image signals this deployment serves: the nudity model where its registry has a `production` version."""
    from tagwatch.moderation.signals.nudity import build_nudity_signal

    nudity = build_nudity_signal(settings)
    return [nudity] if nudity is not None else []


def default_rules(signals: Sequence[TextSignal | ImageSignal]) -> dict[str, CategoryRule]:
    """The signals' own rules (monitor mode), for the categories a policy does not name."""
    rules: dict[str, CategoryRule] = {}
    for signal in signals:
        rules.update(signal.rules)
    return rules
