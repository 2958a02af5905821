"""The text layer's worked examples are its tests: every docstring example in tutor/text.py must hold."""

from __future__ import annotations

import doctest

import tutor.text


def test_every_docstring_example_holds() -> None:
    failures, tried = doctest.testmod(tutor.text, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert tried >= 12 and failures == 0
