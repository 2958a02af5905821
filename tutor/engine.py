"""The llama.cpp engine in a process of its own, so that a crash in native code never ends the tutor.

`Engine(config)` starts `python -m tutor.engine` with one end of a socket pair and an unlinked file
as its stdout and stderr (llama.cpp's notes and any crash report stay off the terminal, readable
after a crash). The child probes the build and the CPU (cpu.py), loads the one `Llama` with weight
repacking as the probe decides (`use_extra_bufts`), then serves one request at a time:

    parent -> child   {config}, ("generate", token_ids, sampling), ("cancel",)
    child -> parent   ("cpu", CpuReport), ("ready", {...}) | ("failed", why),
                      ("delta", text, entropies) ..., ("end", None | error)

Each delta carries the entropy (nats) of the distribution every token behind it was drawn from: how
unsure the model was as it wrote (the verifier weighs it, meaning.py).

A ("cancel",) is read between two tokens: the generation stops at the next one. The `Llama` lives as
long as the process, so consecutive prompts that share their opening reuse its KV cache. When the
child dies (SIGSEGV, abort, the OOM killer's SIGKILL) the parent's next read raises EngineCrashed
naming the signal; chat.py then starts a new engine. It does not tokenize or format prompts and
holds no lock: chat.py does both, in the parent.
"""

from __future__ import annotations

import atexit
import contextlib
import faulthandler
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection, Pipe
from pathlib import Path
from typing import IO, Any

import numpy as np

from tutor.cpu import REBUILD, CpuReport, probe
from tutor.errors import EngineCrashed

_ROOT = Path(__file__).resolve().parent.parent  # so the child imports this very copy of `tutor`
_LIVE: weakref.WeakSet[Engine] = weakref.WeakSet()
_EXITING = False


class LoadFailed(Exception):
    """llama.cpp refused the file in the engine's process (chat.py words it for the user)."""


class GenerationFailed(Exception):
    """llama.cpp failed while decoding (the child is still alive; chat.py words it for the user)."""


class Engine:
    """The parent's handle on one engine process. Not thread-safe: chat.py's lock serializes it."""

    def __init__(self, config: dict[str, Any]) -> None:
        parent, child = Pipe()  # a Unix socket pair: the child's end is inherited by its fd number
        self._log: IO[bytes] = tempfile.TemporaryFile(prefix="tutor-engine-")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(_ROOT), os.environ.get("PYTHONPATH")]))}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tutor.engine", str(child.fileno())],
            pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log, env=env,
        )  # fmt: skip
        child.close()  # only the child holds it now: its death is our end of file
        self._conn = parent
        self._conn.send(config)
        self.report: CpuReport | None = None
        self.loaded: dict[str, Any] | None = None
        self.dead = False
        _LIVE.add(self)
        weakref.finalize(self, _stop, self.process, self._conn).atexit = False  # the log closes with self

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_report(self) -> CpuReport:
        """The build and CPU the child found (it sends them before loading anything)."""
        if self.report is None:
            kind, value = self.receive()
            assert kind == "cpu", kind
            self.report = value
        return self.report

    def wait_ready(self) -> dict[str, Any]:
        """The loaded model's threads and load time; LoadFailed if llama.cpp refused the file."""
        self.wait_report()
        if self.loaded is None:
            kind, value = self.receive()
            if kind == "failed":
                self.stop()
                raise LoadFailed(value)
            self.loaded = value
        return self.loaded

    def send(self, message: tuple[Any, ...]) -> None:
        try:
            self._conn.send(message)
        except OSError as exc:  # the child is gone; its exit status says why
            raise self._crashed() from exc

    def receive(self) -> tuple[Any, ...]:
        try:
            message: tuple[Any, ...] = self._conn.recv()
        except (EOFError, OSError) as exc:
            raise self._crashed() from exc
        return message

    def generate(self, tokens: list[int], sampling: dict[str, Any]) -> Iterator[tuple[str, tuple[float, ...]]]:
        """Stream one completion as (text, its tokens' entropies); closing the iterator before its end
        cancels it at the next token."""
        self.send(("generate", tokens, sampling))
        ended = False
        try:
            while True:
                message = self.receive()
                kind, value = message[0], message[1]
                if kind == "end":
                    ended = True
                    if value:
                        raise GenerationFailed(value)
                    return
                yield value, message[2]
        except EngineCrashed:
            ended = True
            raise
        finally:
            if not ended:
                self._cancel()

    def log_tail(self, limit: int = 3000) -> str:
        """The end of what the child wrote (llama.cpp's notes, faulthandler's report of a crash)."""
        size = os.fstat(self._log.fileno()).st_size
        data = os.pread(self._log.fileno(), limit, max(0, size - limit))
        return data.decode("utf-8", "replace").strip()

    def stop(self) -> None:
        """End the process; its log stays readable until this object goes."""
        self.dead = True
        _stop(self.process, self._conn)

    def _cancel(self) -> None:
        try:
            self.send(("cancel",))
            while self.receive()[0] != "end":  # drain the tokens already sent: the next request starts clean
                pass
        except EngineCrashed:
            pass  # died while stopping: `dead` is set, and chat.py starts another engine

    def _crashed(self) -> EngineCrashed:
        self.dead = True
        try:
            code = self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # alive but its pipe broke: end it
            self.process.kill()
            code = self.process.wait()
        return EngineCrashed(exit_description(code), pid=self.pid, code=code, log=self.log_tail())


def exit_description(code: int) -> str:
    """'SIGSEGV (señal 11)' for a death by signal, 'código 1' for an exit."""
    if code >= 0:
        return f"código {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = "una señal"
    hint = f" (¿compilado para otra CPU? Recompílelo: {REBUILD})" if -code == signal.SIGILL else ""
    return f"{name} (señal {-code}){hint}"


def probe_in_child(repack: str = "auto") -> CpuReport:
    """The engine's build and CPU, asked of a short-lived engine process (a bad build dies there)."""
    engine = Engine({"probe": True, "repack": repack})
    try:
        return engine.wait_report()
    finally:
        engine.stop()


def exiting() -> bool:
    """True once the interpreter is shutting down: a dying engine is not replaced then."""
    return _EXITING


def _stop(process: subprocess.Popen[bytes], conn: Connection) -> None:
    conn.close()
    if process.poll() is None:
        process.terminate()  # nothing to save: the engine holds no state but its KV cache
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@atexit.register
def _stop_all() -> None:
    global _EXITING
    _EXITING = True
    for engine in list(_LIVE):
        engine.stop()


# The child's side.


class EngineCore:
    """Owns the `Llama`: token ids in, text pieces out, the sampler chain freed as soon as each ends."""

    def __init__(self, llama: Any) -> None:
        self.llama = llama

    @classmethod
    def load(cls, config: dict[str, Any], *, repack: bool) -> EngineCore:
        from llama_cpp import Llama

        with model_params(use_extra_bufts=repack):
            llama = Llama(
                model_path=config["path"],
                n_ctx=config["n_ctx"],
                n_threads=config.get("n_threads"),
                n_threads_batch=config.get("n_threads_batch"),
                seed=config.get("seed", 42),
                # Weights are read into memory, not mmapped: a GGUF truncated or overwritten while
                # the app runs (cp over TUTOR_GGUF) would otherwise kill it with SIGBUS
                # (tests/test_faults.py). Peak RSS with Gemma 270M: 367 MiB vs 380 mmapped.
                use_mmap=False,
                verbose=False,
            )
        return cls(llama)

    def generate(
        self, tokens: list[int], sampling: dict[str, Any], stop: Callable[[], bool]
    ) -> Iterator[tuple[str, tuple[float, ...]]]:
        """Stream a completion of `tokens` as (text, the entropies of the tokens behind it); `stop()` is
        asked after every token."""
        from llama_cpp import LogitsProcessorList

        entropies: list[float] = []

        def record(_: Any, scores: np.ndarray) -> np.ndarray:
            entropies.append(entropy(scores))
            return scores  # unchanged: the sampler chain that follows sees what it would have seen

        chunks = self.llama.create_completion(
            tokens, stream=True, logits_processor=LogitsProcessorList([record]), **sampling
        )
        try:
            for chunk in chunks:
                text = chunk["choices"][0]["text"]
                if text:  # tokens held back (a stop sequence forming, half a character) go with the text they make
                    yield text, tuple(entropies)
                    entropies.clear()
                if stop():
                    return
        finally:
            chunks.close()  # stops llama.cpp between two tokens
            self.free_sampler()

    def free_sampler(self) -> None:
        """Free the finished generation's sampler chain now instead of at Python's next full collection.

        subtle: llama-cpp-python builds a new sampler chain for every completion and drops the old one
        inside a reference cycle (its free callback holds the object), so only the cyclic GC frees it,
        and by then it has moved to the oldest generation: full collections come about once a minute
        under load. Each chain holds n_vocab × 12 bytes, 3 MB with Gemma's 262k vocabulary, so at N = 20
        about 90 MB of dead chains piled up between collections and the scattered frees kept raising
        the heap's high-water mark (docs/load.md). The next completion builds its own.
        """
        sampler = getattr(self.llama, "_sampler", None)
        if sampler is not None and hasattr(sampler, "close"):
            self.llama._sampler = None  # Llama.sample() then builds a temporary one, as it does when unset
            sampler.close()


def entropy(logits: np.ndarray) -> float:
    """The entropy (nats) of the softmax of one step's logits, in float64.

    A logits processor sees the full distribution before the sampler chain (penalties, temperature):
    the same one teacher forcing gives (within 0.3 nats with Gemma, docs/verifier.md). With Gemma's 262k
    vocabulary it costs nothing measurable beside the decode (18–21 ms a token either way)."""
    shifted = np.maximum(logits.astype(np.float64) - float(logits.max()), -1e4)  # a -inf logit weighs 0
    weights = np.exp(shifted)
    total = float(weights.sum())
    return max(0.0, math.log(total) - float(weights @ shifted) / total)


@contextlib.contextmanager
def model_params(**fields: Any) -> Iterator[None]:
    """Set fields of llama.cpp's model parameters for the `Llama` built inside the block.

    subtle: llama-cpp-python 0.3.36's `Llama()` fills its `llama_model_params` itself and has no
    argument for `use_extra_bufts` (unknown keyword arguments are swallowed), so its default-params
    function is wrapped while the block runs. Only the engine process does this, before it serves
    anything, on its only thread.
    """
    import llama_cpp.llama_cpp as native

    known = {field[0] for field in native.llama_model_params._fields_}
    if not set(fields) <= known:  # a renamed field would otherwise be set as a plain attribute, silently
        raise RuntimeError(f"this llama-cpp-python has no model parameter {sorted(set(fields) - known)}")
    original = native.llama_model_default_params

    def params() -> Any:
        values = original()
        for name, value in fields.items():
            setattr(values, name, value)
        return values

    native.llama_model_default_params = params
    try:
        yield
    finally:
        native.llama_model_default_params = original


def serve(conn: Connection) -> None:
    """The engine process: probe, load, then answer requests until the parent goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in a terminal is the parent's to handle
    faulthandler.enable()  # a native crash leaves the Python stack in the log the parent reads
    config: dict[str, Any] = conn.recv()
    report = probe(config.get("repack", "auto"))
    conn.send(("cpu", report))
    if config.get("probe") or report.missing:  # a build for another CPU would die of SIGILL: chat.py says so
        return
    started = time.perf_counter()
    try:
        core = EngineCore.load(config, repack=report.repack)
    except Exception as exc:  # llama.cpp reports every load failure as one ValueError
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    llama = core.llama
    conn.send(("ready", {"n_threads": llama.n_threads, "n_threads_batch": llama.n_threads_batch,
                         "repack": bool(llama.model_params.use_extra_bufts),
                         "load_s": round(time.perf_counter() - started, 2)}))  # fmt: skip
    while True:
        message = conn.recv()  # EOFError once the parent is gone: the process ends
        if message[0] == "generate":
            _answer(core, conn, message[1], message[2])
        # a ("cancel",) that arrives after its generation ended is ignored


def _answer(core: EngineCore, conn: Connection, tokens: list[int], sampling: dict[str, Any]) -> None:
    def cancelled() -> bool:
        return conn.poll() and conn.recv()[0] == "cancel"

    try:
        for text, entropies in core.generate(tokens, sampling, cancelled):
            conn.send(("delta", text, entropies))
    except (RuntimeError, ValueError) as exc:  # llama_decode failures: the model, not the caller
        conn.send(("end", str(exc)))
        return
    conn.send(("end", None))


if __name__ == "__main__":
    try:
        serve(Connection(int(sys.argv[1])))
    except (EOFError, BrokenPipeError, ConnectionResetError):
        pass  # the parent ended: so does the engine
