"""Generation: the ChatModel seam, the llama.cpp backend, the prompt fitter, and a fake.

Input: a prepared ChatPrompt (a model with a chat template) or TextPrompt (a base model); output: the
reply as text deltas, streamed (from llama.cpp, `Piece`s that also carry their tokens' entropies).
`LlamaCppModel` tokenizes here and generates in an engine process of its own (engine.py): a crash
in llama.cpp (a segfault, an abort, the OOM killer) ends that one reply with EngineCrashed, the
pipeline answers it from the course, and a new engine starts at once. One generation at a time
behind a lock; closing the stream stops generation at the next token.
Consecutive prompts that share their opening reuse the engine's KV cache of that prefix (no saved
states: 512 MiB each with Gemma). It does not build prompts (the prompt layer does) nor judge the
answer (verification does).
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

from tutor.catalogue import writer_name
from tutor.cpu import REBUILD, CpuReport, Repack
from tutor.engine import Engine, GenerationFailed, LoadFailed, exiting
from tutor.errors import EngineCrashed, ModelError, PromptTooLong, TutorError, UnsupportedModel
from tutor.gguf_file import GGUFHeader, preflight
from tutor.types import ChatPrompt, Piece, TextPrompt

Prompt = ChatPrompt | TextPrompt
Style = Literal["chat", "completion"]
T = TypeVar("T")
ENGINE = "en un proceso aparte: si llama.cpp falla, el tutor responde con el curso y lo reinicia"
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
    cpu: str = ""  # the CPU's model name
    cpu_features: tuple[str, ...] = ()  # what the llama.cpp build uses (its system info)
    repack: bool | None = None  # llama.cpp may repack the weights for this CPU (use_extra_bufts)
    repack_reason: str = ""
    engine: str = ""  # where generation runs (llama.cpp: in a process of its own)
    problem: str = ""  # what keeps the engine from running on this machine (a build for another CPU)


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
    """llama.cpp via llama-cpp-python, generating in an engine process (engine.py) that may crash.

    The parent keeps a vocabulary-only `Llama` (no weights, about 0.5 s and 90 MiB with Gemma) to
    count tokens and render the chat template, so planning never waits for a generation (its
    tokenizer is about 1.6x slower than the full model's: docs/load.md); the engine gets token ids.
    One generation at a time behind a lock, callers queue in arrival order. A crash of the engine
    ends that generation with EngineCrashed and a new engine is started at once.
    """

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
        repack: Repack = "auto",
    ) -> None:
        header = preflight(path, n_ctx=n_ctx)  # clear errors before llama.cpp sees a bad file
        self.style: Style = choose_style(style, header)
        self.n_ctx = n_ctx
        self._path, self._header, self._packaged = path, header, packaged
        self.writer = writer_name(path)  # its catalogue name, for the verifier's per-writer threshold
        self._sampling = {"temperature": temperature, "top_p": top_p, "repeat_penalty": repeat_penalty}
        self._stop = list(stop)
        self._config = {"path": str(path), "n_ctx": n_ctx, "n_threads": n_threads,
                        "n_threads_batch": n_threads_batch, "seed": seed, "repack": repack}  # fmt: skip
        self._lock = threading.Lock()  # one generation at a time: the engine serves one request
        self._counter_lock = threading.Lock()
        self._waiting = 0
        self._engine: Engine | None = Engine(self._config)
        self._report = self._checked_build(self._engine)
        self._vocab = self._load_vocab()  # while the engine loads the weights
        self._loaded = self._ready(self._engine)
        self._formatter, self._eos = self._chat_formatter()

    def _checked_build(self, engine: Engine) -> CpuReport:
        """The engine's CPU report; a build for another CPU is refused before this process imports it."""
        try:
            report = engine.wait_report()
        except EngineCrashed as exc:
            fix = "" if REBUILD in exc.how else f" Reinstale llama-cpp-python: {REBUILD}"
            raise ModelError(f"El motor llama.cpp no arrancó: terminó con {exc.how}.{fix}") from exc
        if report.missing:
            engine.stop()
            raise ModelError(report.mismatch_message())
        return report

    def _load_vocab(self) -> Any:
        from llama_cpp import Llama

        noise = io.StringIO()
        try:
            # llama.cpp prints some notes even with verbose=False, through sys.stderr: keep them for
            # the log, off the user's terminal.
            with contextlib.redirect_stderr(noise):
                return Llama(model_path=str(self._path), vocab_only=True, n_ctx=512, n_threads=1,
                             n_threads_batch=1, use_mmap=False, verbose=False)  # fmt: skip
        except Exception as exc:  # llama.cpp reports every load failure as one ValueError
            self._stop_engine()
            raise self._unsupported() from exc
        finally:
            if noise.getvalue():
                log.debug("llama.cpp while loading %s: %s", self._path, noise.getvalue().strip())

    def _ready(self, engine: Engine) -> dict[str, Any]:
        try:
            return engine.wait_ready()
        except (LoadFailed, EngineCrashed) as exc:
            log.debug("engine could not load %s: %s\n%s", self._path, exc, engine.log_tail())
            self._stop_engine()
            raise self._unsupported() from exc

    def _unsupported(self) -> UnsupportedModel:
        return UnsupportedModel(
            f"llama.cpp no pudo cargar «{self._path}» (arquitectura «{self._header.architecture}»): esta "
            "versión de llama-cpp-python no la admite o el archivo está dañado. Use un GGUF de una "
            "arquitectura admitida (llama, qwen2, gemma3, …) con TUTOR_GGUF o --gguf."
        )

    def _chat_formatter(self) -> tuple[Any, str]:
        template = str(self._header.metadata["tokenizer.chat_template"]) if self.style == "chat" else None
        return chat_formatter(self._vocab, template)

    @property
    def waiting(self) -> int:
        """Callers queued for the model right now (a new caller's place is this plus one)."""
        return self._waiting

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    @property
    def engine_pid(self) -> int | None:
        """The engine process's id (None between a failed restart and the next request)."""
        return self._engine.pid if self._engine is not None and not self._engine.dead else None

    def info(self) -> ModelInfo:
        h, loaded, report = self._header, self._loaded, self._report
        return ModelInfo(
            "llama.cpp", str(h.path), h.name, self.style, self.n_ctx, packaged=self._packaged,
            size_bytes=h.size, architecture=h.architecture, context_length=h.context_length,
            n_threads=loaded["n_threads"], n_threads_batch=loaded["n_threads_batch"], cpu=report.name,
            cpu_features=report.features, repack=loaded["repack"], repack_reason=report.repack_reason,
            engine=ENGINE,
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
        # A chat model's turn ends at its end token, as create_chat_completion would stop it.
        ends = [self._eos] if self.style == "chat" else []
        sampling = {"max_tokens": max_tokens, "stop": [*prompt.stop, *self._stop, *ends], **self._sampling}
        return self._generate(tokens, sampling)

    def close(self) -> None:
        """End the engine process now (it also ends when this object is collected, or at exit)."""
        self._stop_engine()

    def _tokens(self, prompt: Prompt) -> list[int]:
        if isinstance(prompt, ChatPrompt) != (self.style == "chat"):
            raise ValueError(f"a {type(prompt).__name__} for a {self.style}-style model")
        if isinstance(prompt, TextPrompt):
            # The student's text is tokenized with special=False: typed control tokens stay plain text.
            return list(self._vocab.tokenize(prompt.text.encode("utf-8"), add_bos=True, special=False))
        assert self._formatter is not None
        rendered = self._formatter(messages=_messages(prompt))
        # the same call llama-cpp-python's chat handler makes with the rendered template
        text = rendered.prompt.encode("utf-8")
        return list(self._vocab.tokenize(text, add_bos=not rendered.added_special, special=True))

    def _generate(self, tokens: list[int], sampling: dict[str, Any]) -> Iterator[str]:
        with self._counter_lock:
            self._waiting += 1
        try:
            self._lock.acquire()
        finally:
            with self._counter_lock:
                self._waiting -= 1
        engine = None
        try:
            engine = self._running_engine()
            for text, entropies in engine.generate(tokens, sampling):
                yield Piece(text, entropies)
        except GenerationFailed as exc:
            raise ModelError(f"El modelo falló al generar ({exc}). Inténtelo de nuevo.") from exc
        except EngineCrashed as exc:
            log.info("the engine's last words:\n%s", exc.log or "(nothing)")  # the pipeline warns
            raise
        finally:
            try:
                if engine is not None and engine.dead:
                    self._restart()  # now, so that the next student does not wait for the load as well
            except TutorError as exc:  # reported to the next caller, who tries again
                log.warning("the engine was not restarted: %s", exc)
            finally:
                self._lock.release()

    def _running_engine(self) -> Engine:
        """The engine, started again if the last one died; ModelError if it cannot load."""
        if self._engine is None or self._engine.dead or self._engine.process.poll() is not None:
            self._restart()  # died while idle (the OOM killer, say): nobody was being answered
        if self._engine is None:
            raise ModelError(f"El motor del modelo no se pudo reiniciar con «{self._path}». Reinicie el tutor.")
        self._ready(self._engine)
        return self._engine

    def _restart(self) -> None:
        self._engine = None
        if exiting():
            return
        header = preflight(self._path, n_ctx=self.n_ctx)  # the file may have gone or changed meanwhile
        if (header.size, header.name) != (self._header.size, self._header.name):
            raise ModelError(f"«{self._path}» cambió desde que arrancó el tutor: reinícielo para usar el modelo nuevo.")
        self._engine = Engine(self._config)

    def _stop_engine(self) -> None:
        if self._engine is not None:
            self._engine.stop()


def chat_formatter(llama: Any, template: str | None) -> tuple[Any, str]:
    """A GGUF's own chat template rendered as create_chat_completion would (None without a template),
    and the text of its end token. `llama`: a `Llama` of that GGUF (its vocabulary is enough)."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    special = llama.detokenize  # the template's bos/eos texts, as the library reads them
    eos = special([llama.token_eos()], special=True).decode("utf-8", "replace")
    if template is None:
        return None, eos
    bos = special([llama.token_bos()], special=True).decode("utf-8", "replace")
    return Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos), eos


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
