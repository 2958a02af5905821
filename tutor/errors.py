"""Errors whose message is safe to show to a student or an instructor.

Every message says what went wrong and what to do next. Anything that is not a TutorError is a bug:
it is logged with its traceback, and the user sees a short apology instead.
"""

from __future__ import annotations


class TutorError(Exception):
    """Message is safe to show to a student or instructor, and says how to fix the problem."""


class IndexNotReady(TutorError):
    """The course index is missing, empty, damaged, or built by another embedder or version."""

    def __init__(self, problem: str) -> None:
        super().__init__(f"{problem} Reconstruya el índice con: tutor ingest --rebuild")


class EmbedderError(TutorError):
    """The configured embedding model cannot be loaded."""


class BadQuery(TutorError):
    """A question that cannot be searched (empty, or nothing but symbols)."""


class DatasetError(TutorError):
    """An evaluation dataset that cannot be read at all."""
