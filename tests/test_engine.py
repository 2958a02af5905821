"""A crash of the native engine is survivable (issue 14): real signals to the real engine process.

The packaged Gemma generates in its own process (tutor/engine.py). These tests send that process a
real SIGSEGV (or SIGKILL, as the OOM killer does) in the middle of an answer, through the real
pipeline and course index, and check what the student gets: the course's sentences with a notice in
their language, then a generated answer to the next question from a new engine. The only thing a
fake decides is *when* the signal is sent (after the first pieces of text have streamed).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_chat import _until

from tutor.chat import LlamaCppModel, Prompt
from tutor.engine import Engine, LoadFailed, exit_description
from tutor.errors import EngineCrashed
from tutor.pipeline import Tutor, build_tutor
from tutor.types import TextPrompt

QUESTION = TextPrompt("Pregunta: ¿Qué es un modelo de lenguaje?\nRespuesta:")


@pytest.fixture(scope="module")
def model(gemma_path: Path) -> Iterator[LlamaCppModel]:
    """A Gemma of its own: these tests kill its engine again and again."""
    gemma = LlamaCppModel(gemma_path, n_ctx=2048, n_threads=1, n_threads_batch=1, seed=1234, packaged=True)
    yield gemma
    gemma.close()


class SignalAfter:
    """The real model behind the ChatModel protocol; sends its engine a real signal after `after` pieces."""

    def __init__(self, model: LlamaCppModel, after: int = 2, signum: int = signal.SIGSEGV) -> None:
        self.model, self.after, self.signum = model, after, signum
        self.style, self.n_ctx = model.style, model.n_ctx
        self.killed: list[int] = []

    def info(self):  # noqa: ANN201 - the real model's
        return self.model.info()

    def count_tokens(self, prompt: Prompt) -> int:
        return self.model.count_tokens(prompt)

    def stream(self, prompt: Prompt, *, max_tokens: int) -> Iterator[str]:
        pieces = self.model.stream(prompt, max_tokens=max_tokens)

        def run() -> Iterator[str]:
            try:
                for i, piece in enumerate(pieces, start=1):
                    yield piece
                    if i == self.after:
                        pid = self.model.engine_pid
                        assert pid is not None
                        self.killed.append(pid)
                        os.kill(pid, self.signum)
            finally:
                pieces.close()

        return run()


@pytest.fixture(scope="module")
def tutor(course_settings, course_index, model) -> Tutor:
    settings = course_settings.model_copy(update={"max_tokens": 48})
    tutor, notices = build_tutor(settings, model="none", index=course_index)
    assert notices == []
    tutor.model = model
    return tutor


def answer(tutor: Tutor, message: str):
    replies = list(tutor.answer(tutor.plan(message)))
    assert replies[-1].final and replies[-1].answer is not None
    return replies, replies[-1].answer


@pytest.mark.parametrize(
    ("message", "language", "signum"),
    [
        ("¿qué cambió RoBERTa respecto a BERT?", "es", signal.SIGSEGV),
        ("What did RoBERTa change compared to BERT?", "en", signal.SIGSEGV),
        ("¿qué es RAG y por qué reduce las alucinaciones?", "es", signal.SIGKILL),  # the OOM killer's signal
    ],
)
def test_a_crash_mid_answer_gives_the_course_and_a_notice_then_the_model_answers_again(
    tutor: Tutor, model: LlamaCppModel, message: str, language: str, signum: int, caplog
) -> None:
    crashing = SignalAfter(model, after=2, signum=signum)
    tutor.model = crashing
    try:
        with caplog.at_level(logging.WARNING, logger="tutor"):
            replies, crashed = answer(tutor, message)
    finally:
        tutor.model = model
    assert crashing.killed, "the signal was sent mid-answer"
    assert crashed.plan.language == language
    assert crashed.fallback == "extractive" and not crashed.verified and crashed.generated == ""
    assert crashed.notice == tutor.prompts.reply("engine_crashed", language)
    first = replies[0].text  # the course's sentences, shown before the model ran
    assert crashed.text and crashed.text in first, "the answer is the course's sentences shown at once"
    shown = replies[-1].text
    assert crashed.notice in shown, "the student reads why the answer is quoted"
    assert crashed.citations and all(f"§{s}" in shown for s in crashed.citations)
    assert signal.Signals(signum).name in caplog.text, "the log names the signal"

    # The next question is answered by the model again, from a new engine, without a restart of the tutor.
    assert model.engine_pid not in (None, *crashing.killed)
    _, after = answer(tutor, "¿Qué es BERT y cómo lee el texto?")
    assert after.generated.strip(), "a real generated answer"
    assert after.notice != tutor.prompts.reply("engine_crashed", "es")
    assert not model.busy and model.waiting == 0


def test_the_crash_notice_exists_in_every_language() -> None:
    from tutor.prompts import LANGUAGES, PromptLibrary

    prompts = PromptLibrary(Path(__file__).resolve().parent.parent / "prompts")
    notices = {language: prompts.reply("engine_crashed", language) for language in LANGUAGES}
    assert set(LANGUAGES) == {"es", "en", "pt", "fr", "ca", "it", "de"}
    assert all(notices.values()) and len(set(notices.values())) == len(LANGUAGES), "one text per language"


def test_an_engine_killed_while_idle_is_replaced_before_the_next_answer(model: LlamaCppModel) -> None:
    """Nobody was being answered: the next student does not see a crash notice, only a generated text."""
    old = model.engine_pid
    assert old is not None
    os.kill(old, signal.SIGKILL)
    _wait_gone(old)
    text = "".join(model.stream(QUESTION, max_tokens=8))
    assert text.strip() and model.engine_pid not in (None, old)


def test_a_caller_queued_behind_a_crash_gets_its_answer(model: LlamaCppModel) -> None:
    first = model.stream(QUESTION, max_tokens=200)
    next(first)  # generating: the engine is busy
    got: list[str] = []
    waiter = threading.Thread(target=lambda: got.extend(model.stream(QUESTION, max_tokens=8)))
    waiter.start()
    assert _until(lambda: model.waiting == 1), "the second caller should be queued"
    pid = model.engine_pid
    assert pid is not None
    os.kill(pid, signal.SIGSEGV)
    with pytest.raises(EngineCrashed, match="SIGSEGV"):
        list(first)
    waiter.join(120)
    assert not waiter.is_alive() and "".join(got).strip(), "the queued caller was answered by the new engine"
    assert not model.busy and model.waiting == 0


def test_stopping_a_reply_keeps_the_same_engine(model: LlamaCppModel) -> None:
    """The stop button cancels between two tokens; the engine lives on (and keeps its KV cache)."""
    pid = model.engine_pid
    stream = model.stream(QUESTION, max_tokens=200)
    pieces = [next(stream) for _ in range(3)]
    stream.close()
    assert len(pieces) == 3 and not model.busy
    assert "".join(model.stream(QUESTION, max_tokens=8)).strip() and model.engine_pid == pid


def test_a_file_the_engine_cannot_load_is_reported_not_crashed(tmp_path: Path) -> None:
    engine = Engine({"path": str(tmp_path / "gone.gguf"), "n_ctx": 512, "n_threads": 1, "n_threads_batch": 1})
    with pytest.raises(LoadFailed, match="does not exist"):
        engine.wait_ready()
    assert engine.dead and engine.process.returncode is not None
    assert isinstance(engine.log_tail(), str), "still readable after the stop: chat.py logs it"


def test_a_death_by_signal_is_named_and_an_illegal_instruction_says_how_to_rebuild() -> None:
    assert exit_description(-signal.SIGSEGV) == "SIGSEGV (señal 11)"
    assert "--no-cache-dir --force-reinstall" in exit_description(-signal.SIGILL)
    assert exit_description(1) == "código 1"


def _wait_gone(pid: int) -> None:
    assert _until(lambda: not Path(f"/proc/{pid}").exists() or _zombie(pid)), f"process {pid} still alive"


def _zombie(pid: int) -> bool:
    """Every thread has exited: a leader shows Z while its other threads still close the socket."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
        return all((task / "stat").read_text().split(") ")[1].startswith(("Z", "X")) for task in tasks)
    except (OSError, IndexError):
        return True
