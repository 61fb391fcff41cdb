"""The consumer preprocesses with the preset the served model was trained with (recorded in its registry version)."""

from types import SimpleNamespace

from tagwatch.moderation.consumer import ConsumerOptions, ModerationConsumer
from tagwatch.preprocess import DEFAULT_PRESET, PRESETS, Preset

SMALL = Preset(name="tiny-64", resize=73, crop=64)


def _preset(options, scorer):
    return ModerationConsumer.preset.fget(SimpleNamespace(options=options, scorer=scorer))


def test_scorer_preset_wins_over_default():
    assert _preset(ConsumerOptions(), SimpleNamespace(preset=SMALL)) == SMALL


def test_explicit_option_wins_over_scorer():
    big = PRESETS["tagwatch-224"]
    assert _preset(ConsumerOptions(preset=big), SimpleNamespace(preset=SMALL)) == big


def test_default_when_scorer_records_none():
    assert _preset(ConsumerOptions(), SimpleNamespace(preset=None)) == DEFAULT_PRESET
    assert _preset(ConsumerOptions(), object()) == DEFAULT_PRESET  # e.g. an OnnxScorer built from a bare file
