"""Integration fixtures shared across modules."""

from __future__ import annotations

import pytest

from tests.support.corpus import build_corpus


@pytest.fixture(scope="session")
def built(stack_settings, tmp_path_factory):
    """The data corpus, ingested and built once per session (tests.support.corpus). test_data_build.py's privacy
    tests delete a post of it, last in that module; a later user builds its own baseline rather than assuming the
    first build is current."""
    return build_corpus(stack_settings, tmp_path_factory)
