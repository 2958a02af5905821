"""Generation: the ChatModel seam, the llama.cpp backend, the prompt fitter, and a fake.

Input: a prepared ChatPrompt (a model with a chat template) or TextPrompt (a base model); output: the
reply as text deltas, streamed. One llama.cpp context per model and one generation at a time behind
a lock; closing the stream stops generation and frees the model. Consecutive prompts that share
their opening reuse llama.cpp's KV cache of that prefix (no saved states: 512 MiB each with Gemma).
It does not build prompts (the prompt layer does) nor judge the answer (verification does).
"""

from __future__ import annotations

import contextlib
import io
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from tutor.errors import ModelError, PromptTooLong, UnsupportedModel
from tutor.gguf_file import GGUFHeader, preflight
from tutor.types import ChatPrompt, TextPrompt

Prompt = ChatPrompt | TextPrompt
Style = Literal["chat", "completion"]
T = TypeVar("T")
log = logging.getLogger("tutor")


@dataclass(frozen=True)
class ModelInfo:
    """What `tutor model info` prints: where the model comes from and how it is driven."""

    backend: str  # "llama.cpp", "servidor OpenAI-compatible", "echo"
    source: str  # file path or base URL
    name: str
    style: Style
    n_ctx: int
    packaged: bool = False
    size_bytes: int | None = None
    architecture: str | None = None
    context_length: int | None = None  # what the model was trained for; n_ctx is what we allocate
    n_threads: int | None = None
    n_threads_batch: int | None = None


class ChatModel(Protocol):
    style: Style
    n_ctx: int

    def stream(self, prompt: Prompt, *, max_tokens: int) -> Iterator[str]: ...

    def count_tokens(self, prompt: Prompt) -> int: ...

    def info(self) -> ModelInfo: ...


@dataclass(frozen=True)
class FittedPrompt:
    prompt: Prompt
    tokens: int  # measured with the model's own tokenizer
    dropped: int  # how many of the caller's droppable parts were left out


def fit_prompt(
    model: ChatModel, render: Callable[[Sequence[T]], Prompt], droppable: Sequence[T], *, reply_tokens: int
) -> FittedPrompt:
    """Build the prompt with as many droppable parts as fit in n_ctx beside `reply_tokens` of reply.

    Args:
        droppable: the parts that may go, in the order they go: oldest history first, then the
            lowest-ranked passages. Everything else (instructions, question) is always kept.
        render: builds the prompt from the parts still in (a suffix of `droppable`).
    """
    budget = model.n_ctx - reply_tokens
    tokens = 0
    for dropped in range(len(droppable) + 1):
        prompt = render(droppable[dropped:])
        tokens = model.count_tokens(prompt)
        if tokens <= budget:
            return FittedPrompt(prompt, tokens, dropped)
    raise PromptTooLong(
        f"La pregunta no cabe en el contexto del modelo: ocupa {tokens} tokens sin historial ni pasajes, "
        f"y caben {max(budget, 0)} ({model.n_ctx} de contexto menos {reply_tokens} para la respuesta). "
        "Acorte la pregunta, o aumente TUTOR_N_CTX o reduzca TUTOR_MAX_TOKENS."
    )


class LlamaCppModel:
    """llama.cpp via llama-cpp-python: one context, one generation at a time. Does not build prompts."""

    def __init__(
        self,
        path: Path,
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        n_threads_batch: int | None = None,
        seed: int = 42,
        temperature: float = 0.0,
        top_p: float = 0.95,
        repeat_penalty: float = 1.1,
        stop: Sequence[str] = (),
        style: Literal["auto", "chat", "completion"] = "auto",
        packaged: bool = False,
    ) -> None:
        header = preflight(path, n_ctx=n_ctx)  # clear errors before llama.cpp sees a bad file
        self.style: Style = choose_style(style, header)
        self.n_ctx = n_ctx
        self._header, self._packaged = header, packaged
        self._temperature, self._top_p, self._repeat_penalty = temperature, top_p, repeat_penalty
        self._stop = list(stop)
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        noise = io.StringIO()
        try:
            # subtle: naming the GGUF's own template stops llama-cpp-python from guessing a format,
            # so the formatter below renders exactly what create_chat_completion sends.
            # llama.cpp prints some notes even with verbose=False (Gemma's "full-size SWA cache"),
            # through sys.stderr: keep them for the log, off the user's terminal.
            with contextlib.redirect_stderr(noise):
                self._llama = Llama(
                    model_path=str(path),
                    n_ctx=n_ctx,
                    n_threads=n_threads,
                    n_threads_batch=n_threads_batch,
                    seed=seed,
                    # Weights are read into memory, not mmapped: a GGUF truncated or overwritten
                    # while the app runs (cp over TUTOR_GGUF) would otherwise kill it with SIGBUS
                    # (tests/test_faults.py). Peak RSS with Gemma 270M: 367 MiB vs 380 mmapped; load ~0.7 s slower.
                    use_mmap=False,
                    verbose=False,
                    chat_format="chat_template.default" if self.style == "chat" else None,
                )
        except Exception as exc:  # llama.cpp reports every load failure as one ValueError
            raise UnsupportedModel(
                f"llama.cpp no pudo cargar «{path}» (arquitectura «{header.architecture}»): esta versión "
                "de llama-cpp-python no la admite o el archivo está dañado. Use un GGUF de una arquitectura "
                "admitida (llama, qwen2, gemma3, …) con TUTOR_GGUF o --gguf."
            ) from exc
        finally:
            if noise.getvalue():
                log.debug("llama.cpp while loading %s: %s", path, noise.getvalue().strip())
        self._threads = (self._llama.n_threads, self._llama.n_threads_batch)
        self._formatter = None
        if self.style == "chat":
            special = self._llama.detokenize  # the template's bos/eos texts, as the library reads them
            self._formatter = Jinja2ChatFormatter(
                template=str(header.metadata["tokenizer.chat_template"]),
                eos_token=special([self._llama.token_eos()], special=True).decode("utf-8", "replace"),
                bos_token=special([self._llama.token_bos()], special=True).decode("utf-8", "replace"),
            )
        self._lock = threading.Lock()  # the llama.cpp context is not thread-safe
        self._counter_lock = threading.Lock()
        self._waiting = 0

    @property
    def waiting(self) -> int:
        """Callers queued for the model right now (a new caller's place is this plus one)."""
        return self._waiting

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    def info(self) -> ModelInfo:
        h, (threads, batch) = self._header, self._threads
        return ModelInfo(
            "llama.cpp", str(h.path), h.name, self.style, self.n_ctx, packaged=self._packaged,
            size_bytes=h.size, architecture=h.architecture, context_length=h.context_length,
            n_threads=threads, n_threads_batch=batch,
        )  # fmt: skip

    def count_tokens(self, prompt: Prompt) -> int:
        """Tokens the prompt occupies in the context, as llama.cpp will evaluate them."""
        return len(self._tokens(prompt))

    def stream(self, prompt: Prompt, *, max_tokens: int) -> Iterator[str]:
        """Check the budget now; generate when iterated. Closing the iterator stops and frees the model."""
        tokens = self._tokens(prompt)
        if len(tokens) + max_tokens > self.n_ctx:
            raise PromptTooLong(
                f"El texto para el modelo ocupa {len(tokens)} tokens y con {max_tokens} de respuesta supera "
                f"el contexto de {self.n_ctx}. Acorte la pregunta o aumente TUTOR_N_CTX."
            )
        sampling: dict[str, Any] = {
            "stream": True,
            "max_tokens": max_tokens,
            "stop": [*prompt.stop, *self._stop],
            "temperature": self._temperature,
            "top_p": self._top_p,
            "repeat_penalty": self._repeat_penalty,
        }
        if isinstance(prompt, ChatPrompt):
            messages = _messages(prompt)
            return self._generate(lambda: self._llama.create_chat_completion(messages=messages, **sampling))
        # Completion style gets token ids: the student's text is tokenized with special=False, so
        # typed control tokens stay plain text, and the count above is exactly what is evaluated.
        return self._generate(lambda: self._llama.create_completion(tokens, **sampling))

    def _tokens(self, prompt: Prompt) -> list[int]:
        if isinstance(prompt, ChatPrompt) != (self.style == "chat"):
            raise ValueError(f"a {type(prompt).__name__} for a {self.style}-style model")
        if isinstance(prompt, TextPrompt):
            return self._llama.tokenize(prompt.text.encode("utf-8"), add_bos=True, special=False)
        assert self._formatter is not None
        rendered = self._formatter(messages=_messages(prompt))
        # the same call llama-cpp-python's chat handler makes with the rendered template
        return self._llama.tokenize(rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special, special=True)

    def _generate(self, start: Callable[[], Any]) -> Iterator[str]:
        with self._counter_lock:
            self._waiting += 1
        try:
            self._lock.acquire()
        finally:
            with self._counter_lock:
                self._waiting -= 1
        chunks = None
        try:
            chunks = start()
            for chunk in chunks:
                choice = chunk["choices"][0]
                text = choice["delta"].get("content") if "delta" in choice else choice["text"]
                if text:
                    yield text
        except (RuntimeError, ValueError) as exc:  # llama_decode failures: the model, not the caller
            raise ModelError(f"El modelo falló al generar ({exc}). Inténtelo de nuevo.") from exc
        finally:
            if chunks is not None:
                chunks.close()  # stops llama.cpp between two tokens
            self._free_sampler()
            self._lock.release()

    def _free_sampler(self) -> None:
        """Free the finished generation's sampler chain now instead of at Python's next full collection.

        subtle: llama-cpp-python builds a new sampler chain for every completion and drops the old one
        inside a reference cycle (its free callback holds the object), so only the cyclic GC frees it,
        and by then it has moved to the oldest generation: full collections come about once a minute
        under load. Each chain holds n_vocab × 12 bytes, 3 MB with Gemma's 262k vocabulary, so at N = 20
        about 90 MB of dead chains piled up between collections and the scattered frees kept raising
        the heap's high-water mark (most of the +9 MB/min of RSS in docs/load.md). The next completion
        builds its own.
        """
        sampler = getattr(self._llama, "_sampler", None)
        if sampler is not None and hasattr(sampler, "close"):
            self._llama._sampler = None  # Llama.sample() then builds a temporary one, as it does when unset
            sampler.close()


def choose_style(requested: str, header: GGUFHeader) -> Style:
    """'chat' only for a GGUF that carries its own chat template; 'auto' picks by the header."""
    if requested == "completion" or (requested == "auto" and not header.has_chat_template):
        return "completion"
    if not header.has_chat_template:
        # llama-cpp-python would silently fall back to the llama-2 format: refuse instead.
        raise UnsupportedModel(
            f"TUTOR_PROMPT_STYLE=chat, pero «{header.path}» no trae plantilla de chat "
            "(tokenizer.chat_template). Use TUTOR_PROMPT_STYLE=auto o completion."
        )
    return "chat"


class EchoModel:
    """A fake for UI work and fault injection: streams back the question, word by word. No model file.

    Args:
        reply: text to stream instead of the echo.
        fail_after: raise `error` after this many words (a model that dies mid-answer).
    """

    def __init__(
        self,
        *,
        style: Style = "completion",
        n_ctx: int = 4096,
        reply: str | None = None,
        delay_s: float = 0.0,
        fail_after: int | None = None,
        error: Exception | None = None,
    ) -> None:
        self.style, self.n_ctx = style, n_ctx
        self._reply, self._delay, self._fail_after = reply, delay_s, fail_after
        self._error = error or ModelError("El modelo de prueba falló a propósito.")

    def info(self) -> ModelInfo:
        return ModelInfo("echo", "echo", "echo", self.style, self.n_ctx)

    def count_tokens(self, prompt: Prompt) -> int:
        return len(_text(prompt).split())

    def stream(self, prompt: Prompt, *, max_tokens: int) -> Iterator[str]:
        text = self._reply if self._reply is not None else _echo(prompt)
        return self._words(text.split()[:max_tokens])

    def _words(self, words: list[str]) -> Iterator[str]:
        for i, word in enumerate(words):
            if i == self._fail_after:
                raise self._error
            time.sleep(self._delay)
            yield word if i == 0 else " " + word


def _messages(prompt: ChatPrompt) -> list[Any]:
    """The OpenAI-style message dicts llama-cpp-python takes (typed there as TypedDicts)."""
    return [{"role": m.role, "content": m.content} for m in prompt.messages]


def _text(prompt: Prompt) -> str:
    if isinstance(prompt, TextPrompt):
        return prompt.text
    return "\n".join(m.content for m in prompt.messages)


def _echo(prompt: Prompt) -> str:
    if isinstance(prompt, ChatPrompt):
        users = [m.content for m in prompt.messages if m.role == "user"]
        return users[-1] if users else ""
    return prompt.text.strip().split("\n\n")[-1]  # the last paragraph: the question and its answer label
