"""The generation engine on the real packaged models: Gemma 3 270M (completion style, no chat template)
and SmolLM2-135M-Instruct (chat style), 1 thread, greedy, small max_tokens. Assertions are about
structure (streaming, stop, budget, lock, cancellation, clear faults), never about wording.
Fakes only inject faults; damaged files are real files.
"""

from __future__ import annotations

import ctypes
import gc
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tutor.chat import ChatModel, EchoModel, LlamaCppModel, fit_prompt
from tutor.errors import (
    ModelError,
    ModelFileInvalid,
    ModelFileMissing,
    ModelTooLarge,
    PromptTooLong,
    UnsupportedModel,
)
from tutor.models import packaged_gguf
from tutor.types import ChatPrompt, Message, Piece, TextPrompt

QUESTION = TextPrompt("Pregunta: ¿Qué es un modelo de lenguaje?\nRespuesta:")
LONG_RUN = 200  # a reply long enough that it is still running when the test acts on it


@pytest.fixture(params=["gemma", "smollm", "echo"])
def any_model(request: pytest.FixtureRequest) -> ChatModel:
    if request.param == "echo":
        return EchoModel()
    return request.getfixturevalue(request.param)


def prompt_for(model: ChatModel, question: str = "¿Qué es un modelo de lenguaje?") -> ChatPrompt | TextPrompt:
    if model.style == "chat":
        return ChatPrompt((Message("system", "You are a concise tutor."), Message("user", question)))
    return TextPrompt(f"Pregunta: {question}\nRespuesta:")


def test_every_model_streams_text_pieces_within_the_budget(any_model: ChatModel) -> None:
    pieces = list(any_model.stream(prompt_for(any_model), max_tokens=12))
    assert 1 < len(pieces) <= 12 and all(isinstance(p, str) and p for p in pieces)
    assert any_model.count_tokens(prompt_for(any_model)) > 0
    assert any_model.info().style == any_model.style


def test_llama_cpp_pieces_carry_the_entropy_of_each_token(gemma: LlamaCppModel, smollm: LlamaCppModel) -> None:
    """Each streamed piece says how unsure the model was of the tokens behind it (the verifier weighs it);
    the fake has nothing to say."""
    for model in (gemma, smollm):
        pieces = list(model.stream(prompt_for(model), max_tokens=12))
        entropies = [e for p in pieces for e in p.entropies]
        assert all(isinstance(p, Piece) for p in pieces)
        assert len(pieces) <= len(entropies) <= 12  # a token that ends the reply (a stop) brings no text
        assert all(0.0 <= e <= math.log(262_144) for e in entropies) and max(entropies) > 0.0
    assert not any(isinstance(p, Piece) for p in EchoModel().stream(QUESTION, max_tokens=4))


def test_the_entropy_of_one_step_is_the_softmax_entropy() -> None:
    from tutor.engine import entropy

    logits = np.array([2.0, 1.0, 0.0, -np.inf], dtype=np.float32)
    p = np.exp(logits[:3] - 2.0) / np.exp(logits[:3] - 2.0).sum()
    assert entropy(logits) == pytest.approx(float(-(p * np.log(p)).sum()), abs=1e-6)
    assert entropy(np.zeros(262_144, dtype=np.float32)) == pytest.approx(math.log(262_144))  # uniform: log n
    assert entropy(np.array([0.0, -1e9], dtype=np.float32)) == pytest.approx(0.0, abs=1e-9)  # certain


def test_style_comes_from_the_gguf_metadata(gemma: LlamaCppModel, smollm: LlamaCppModel) -> None:
    assert (gemma.style, smollm.style) == ("completion", "chat")
    info = gemma.info()
    assert info.packaged and info.architecture == "gemma3" and info.size_bytes and info.size_bytes > 200 * 2**20
    assert (info.n_ctx, info.n_threads, info.n_threads_batch) == (2048, 1, 1)
    assert smollm.info().architecture == "llama" and not smollm.info().packaged


def test_a_model_without_chat_template_is_never_driven_as_chat(gemma: LlamaCppModel, gemma_path: Path) -> None:
    with pytest.raises(UnsupportedModel, match="plantilla de chat"):
        LlamaCppModel(gemma_path, style="chat", n_threads=1, n_threads_batch=1)
    with pytest.raises(ValueError):  # a chat prompt would need llama-cpp-python's wrong fallback format
        gemma.stream(ChatPrompt((Message("user", "hola"),)), max_tokens=4)


def test_the_system_text_reaches_a_chat_model(smollm: LlamaCppModel) -> None:
    user = Message("user", "What is BERT?")
    short = smollm.count_tokens(ChatPrompt((Message("system", "Answer briefly."), user)))
    longer = smollm.count_tokens(
        ChatPrompt((Message("system", "Answer briefly. Always cite the section number of the course."), user))
    )
    assert longer >= short + 8  # the system text is in the prompt (chat_format="gemma" would drop it)


def test_the_stop_sequence_ends_the_reply(gemma: LlamaCppModel) -> None:
    free = "".join(gemma.stream(QUESTION, max_tokens=32))
    words = free.split()
    assert len(words) > 4, free
    stop = " " + words[3]  # a word the free-running reply is known to reach
    cut = free.index(stop)
    stopped = "".join(gemma.stream(TextPrompt(QUESTION.text, stop=(stop,)), max_tokens=32))
    assert stopped == free[:cut] and stop not in stopped


def test_fit_drops_oldest_history_first_then_lowest_ranked_passages(gemma_path: Path) -> None:
    small = LlamaCppModel(gemma_path, n_ctx=512, n_threads=1, n_threads_batch=1)
    history = [("turno", f"Turno {i}: " + "el estudiante preguntó por los transformers " * 8) for i in range(3)]
    passages = [("pasaje", f"Pasaje {rank}: " + "BERT lee el texto en ambas direcciones " * 24) for rank in (3, 2, 1)]

    def render(kept: list[tuple[str, str]]) -> TextPrompt:
        return TextPrompt("Material del curso:\n" + "\n".join(text for _, text in kept) + "\n" + QUESTION.text)

    fitted = fit_prompt(small, render, history + passages, reply_tokens=64)
    assert fitted.tokens + 64 <= small.n_ctx and fitted.tokens == small.count_tokens(fitted.prompt)
    assert 3 < fitted.dropped < 6  # every turn went before any passage; the best passages stayed
    assert "Turno" not in fitted.prompt.text and "Pasaje 1:" in fitted.prompt.text
    reply = list(small.stream(fitted.prompt, max_tokens=64))  # the reply budget is really there
    assert 0 < len(reply) <= 64


def test_a_prompt_that_cannot_fit_is_a_clear_error(gemma: LlamaCppModel) -> None:
    huge = TextPrompt("Pregunta: " + "¿qué es la atención? " * 600)
    with pytest.raises(PromptTooLong, match="TUTOR_N_CTX"):
        fit_prompt(gemma, lambda kept: huge, ["un pasaje"], reply_tokens=64)
    with pytest.raises(PromptTooLong):
        gemma.stream(huge, max_tokens=64)  # refused before queueing for the model
    assert not gemma.busy


def test_the_lock_serializes_two_threads_and_reports_the_queue(gemma: LlamaCppModel) -> None:
    events: list[tuple[str, float]] = []
    first_token, queued = threading.Event(), threading.Event()

    def caller(name: str) -> None:
        for i, _ in enumerate(gemma.stream(QUESTION, max_tokens=16)):
            events.append((f"{name}{'-first' if i == 0 else ''}", time.perf_counter()))
            if name == "a" and i == 0:
                first_token.set()
                assert queued.wait(30)  # keep generating only once "b" is waiting
        events.append((f"{name}-done", time.perf_counter()))

    a = threading.Thread(target=caller, args=("a",))
    a.start()
    assert first_token.wait(30)
    b = threading.Thread(target=caller, args=("b",))
    b.start()
    assert _until(lambda: gemma.waiting == 1), "the second caller should be queued"
    queued.set()
    a.join(60), b.join(60)
    names = [name for name, _ in events]
    assert names.index("a-done") < names.index("b-first")  # no interleaving: one generation at a time
    assert gemma.waiting == 0 and not gemma.busy


@pytest.mark.parametrize("how", ["close", "drop"])
def test_cancelling_a_stream_frees_the_model_at_once(gemma: LlamaCppModel, how: str) -> None:
    stream = gemma.stream(QUESTION, max_tokens=LONG_RUN)
    got = [next(stream) for _ in range(3)]
    assert gemma.busy and len(got) == 3
    other: list[str] = []
    waiter = threading.Thread(target=lambda: other.extend(gemma.stream(QUESTION, max_tokens=8)))
    waiter.start()
    assert _until(lambda: gemma.waiting == 1)
    if how == "close":
        stream.close()  # the student pressed stop
    else:
        del stream  # the browser tab went away and the generator was dropped
    waiter.join(60)
    assert not waiter.is_alive() and other, "the waiting caller never got the model"
    assert not gemma.busy


def test_a_stream_that_is_never_read_holds_nothing(gemma: LlamaCppModel) -> None:
    gemma.stream(QUESTION, max_tokens=8)
    assert not gemma.busy and gemma.waiting == 0


def test_finished_generations_leave_no_native_memory_behind(gemma_path: Path) -> None:
    """Each completion's sampler chain (3 MB with Gemma) is freed when it ends, not at the next full GC.

    Measured here on `EngineCore`, the part of the engine that owns the Llama: the engine process runs
    exactly this code, and this process's heap can be read while it does."""
    from tutor.engine import EngineCore, probe_in_child

    config = {"path": str(gemma_path), "n_ctx": 512, "n_threads": 1, "n_threads_batch": 1, "seed": 1234}
    # The probe's decision, as the engine process takes it: repacking crashes on AMX CPUs (MODELS.md §1).
    core = EngineCore.load(config, repack=probe_in_child().repack)
    tokens = core.llama.tokenize(QUESTION.text.encode("utf-8"), add_bos=True, special=False)

    def generate(max_tokens: int, stop_after: int | None = None) -> None:
        seen: list[str] = []
        sampling = {"max_tokens": max_tokens, "temperature": 0.0}
        for piece in core.generate(tokens, sampling, stop=lambda: stop_after is not None and len(seen) >= stop_after):
            seen.append(piece)

    in_use = _malloc_in_use()
    generate(4, stop_after=1)  # warm up: buffers llama.cpp keeps for the context's life
    generate(4)
    gc.disable()  # under load full collections come about once a minute: the sampler must not wait for one
    try:
        before = in_use()
        for _ in range(5):
            generate(4)
        generate(LONG_RUN, stop_after=1)  # the stop button's path: a ("cancel",) between two tokens
        grown = in_use() - before
    finally:
        gc.enable()
    assert grown < 2 * 2**20, f"{grown / 2**20:.1f} MB still held after six generations (3 MB each before)"


def _malloc_in_use():
    """glibc's bytes in use (heap and mmapped chunks); skips the test on other C libraries."""
    try:
        mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):
        pytest.skip("needs glibc 2.33+ (mallinfo2)")

    names = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in names]

    mallinfo2.restype = MallInfo2
    return lambda: mallinfo2().uordblks + mallinfo2().hblkhd


def test_the_packaged_model_is_assembled_once_and_checked(gemma_path: Path, tmp_path: Path) -> None:
    stamp = gemma_path.with_name(gemma_path.name + ".verified")
    before = gemma_path.stat().st_mtime_ns
    assert packaged_gguf(gemma_path.parent.parent) == gemma_path and stamp.is_file()
    assert gemma_path.stat().st_mtime_ns == before  # reused, not rewritten
    # A damaged copy (another file under the same name) is noticed and assembled again.
    target = tmp_path / "models" / gemma_path.name
    target.parent.mkdir()
    with gemma_path.open("rb") as src, target.open("wb") as out:
        out.write(src.read(1_000_000))
    shutil.copy(stamp, target.with_name(stamp.name))
    assert packaged_gguf(tmp_path) == target and target.stat().st_size == gemma_path.stat().st_size


def write_gguf(path: Path, architecture: str) -> Path:
    """A tiny but well-formed GGUF v3: one metadata key, no tensors."""

    def string(text: str) -> bytes:
        return struct.pack("<Q", len(text.encode())) + text.encode()

    meta = string("general.architecture") + struct.pack("<I", 8) + string(architecture)
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + meta)
    return path


def damaged(kind: str, tmp_path: Path, gemma_path: Path) -> Path:
    path = tmp_path / f"{kind}.gguf"
    if kind == "text":
        path.write_text("esto no es un modelo\n")
    elif kind in ("truncated", "header-only", "too-large"):
        with gemma_path.open("rb") as src:
            path.write_bytes(src.read({"truncated": 50_000_000, "header-only": 3_000}.get(kind, 9_000_000)))
        if kind == "too-large":
            os.truncate(path, 2**40)  # sparse: 1 TiB on paper, nothing on disk
    elif kind == "unknown-arch":
        write_gguf(path, "nonexistent")
    return path


@pytest.mark.parametrize(
    ("kind", "error", "says"),
    [
        ("missing", ModelFileMissing, "No hay ningún archivo"),
        ("text", ModelFileInvalid, "no es un archivo GGUF"),
        ("header-only", ModelFileInvalid, "truncado"),
        ("truncated", ModelFileInvalid, "truncado"),
        ("too-large", ModelTooLarge, "memoria"),
        ("unknown-arch", UnsupportedModel, "nonexistent"),
    ],
)
def test_bad_model_files_give_one_clear_error(kind, error, says, tmp_path: Path, gemma_path: Path) -> None:
    path = damaged(kind, tmp_path, gemma_path)
    with pytest.raises(error) as caught:
        LlamaCppModel(path, n_threads=1, n_threads_batch=1)
    message = str(caught.value)
    assert says in message and str(path) in message and "TUTOR_" in message
    assert isinstance(caught.value, ModelError)  # the tutor falls back to retrieval-only answers


def test_echo_model_injects_a_failure_mid_stream() -> None:
    stream = EchoModel(fail_after=2).stream(TextPrompt("Pregunta: uno dos tres cuatro"), max_tokens=10)
    assert [next(stream), next(stream)] == ["Pregunta:", " uno"]
    with pytest.raises(ModelError):
        next(stream)


def run_tutor(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "TUTOR_DATA_DIR": str(data_dir),
        "TUTOR_N_THREADS": "1",
        "TUTOR_N_THREADS_BATCH": "1",
    }
    return subprocess.run([sys.executable, "-m", "tutor", *args], capture_output=True, text=True, env=env, timeout=120)


def test_model_info_and_check_on_the_command_line(model_data_dir: Path, smollm_path: Path) -> None:
    info = run_tutor("model", "info", data_dir=model_data_dir)
    assert info.returncode == 0, info.stderr
    assert "gemma3" in info.stdout and "completion" in info.stdout and "incluido" in info.stdout
    assert "proceso aparte" in info.stdout and "reempaquetado:" in info.stdout and "AVX" in info.stdout
    as_json = json.loads(run_tutor("model", "info", "--json", data_dir=model_data_dir).stdout)
    assert as_json["repack"] in (True, False) and as_json["repack_reason"] and "AVX2" in as_json["cpu_features"]
    assert as_json["problem"] == "", "this machine's build suits its CPU"
    check = run_tutor("--gguf", str(smollm_path), "model", "check", "--max-tokens", "8", data_dir=model_data_dir)
    assert check.returncode == 0, check.stderr
    assert "tokens/s" in check.stdout and "estilo chat" in check.stdout and "reempaquetado de pesos" in check.stdout
    missing = run_tutor("--gguf", "/no/such/model.gguf", "model", "check", data_dir=model_data_dir)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert missing.stderr.count("\n") == 1 and "/no/such/model.gguf" in missing.stderr


def _until(condition, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return False
