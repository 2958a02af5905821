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


class ModelError(TutorError):
    """No generator is available; the tutor still answers from the course passages alone."""


class ModelFileMissing(ModelError):
    """The configured GGUF path does not exist (or the packaged model cannot be assembled)."""


class ModelFileInvalid(ModelError):
    """The file is not a GGUF, or it is truncated or damaged."""


class ModelTooLarge(ModelError):
    """The model and its context need more memory than is free."""


class UnsupportedModel(ModelError):
    """llama.cpp refused to load the file (an architecture this version does not know, or damage)."""


class EngineCrashed(ModelError):
    """The engine's process died (a signal, an abort, the OOM killer); the tutor starts another."""

    def __init__(self, how: str, *, pid: int = 0, code: int = 0, log: str = "") -> None:
        super().__init__(
            f"El motor del modelo (llama.cpp, proceso {pid}) terminó con {how}. "
            "El tutor lo reinicia: vuelva a intentarlo."
        )
        self.how, self.pid, self.code, self.log = how, pid, code, log


class ModelServerError(ModelError):
    """The OpenAI-compatible server refused, timed out or answered with an error."""


class PromptTooLong(TutorError):
    """The prompt and the reply budget do not fit in the model's context, even after shortening."""


class StoreError(TutorError):
    """The local feedback and analytics store cannot be read or written (locked, full, damaged)."""
