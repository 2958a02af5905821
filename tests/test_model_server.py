"""The server backend against the real `python -m llama_cpp.server` on loopback (both prompt styles),
a port where nothing listens, and tiny socket servers that hang before or during the answer.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import LLAMA_SERVER

from tutor.config import Settings
from tutor.errors import ModelServerError
from tutor.models import load_chat_model
from tutor.server_model import OpenAICompatibleChatModel
from tutor.types import ChatPrompt, Message, TextPrompt


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def servers(gemma_path: Path, smollm_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Gemma (completion) and SmolLM2 (chat) served by llama_cpp.server, started together."""
    logs = tmp_path_factory.mktemp("server-logs")
    procs, urls = [], {}
    for name, path in (("gemma", gemma_path), ("smollm", smollm_path)):
        port = free_port()
        cmd = [
            *LLAMA_SERVER,
            "--model",
            str(path),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_threads",
            "1",
            "--n_ctx",
            "2048",
        ]
        # subtle: the server logs a lot while loading; a pipe nobody reads would fill up and stall it
        with (logs / f"{name}.log").open("wb") as log:
            procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT))
        urls[name] = f"http://127.0.0.1:{port}/v1"
    try:
        for proc, (name, url) in zip(procs, urls.items()):
            _wait_until_up(proc, url, logs / f"{name}.log")
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _wait_until_up(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url + "/models", timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"llama_cpp.server did not start at {url}:\n{log.read_text()[-2000:]}")


def test_streams_a_completion_through_the_real_server(servers: dict[str, str]) -> None:
    model = OpenAICompatibleChatModel(servers["gemma"], style="completion", timeout=60, seed=1234)
    prompt = TextPrompt("Pregunta: ¿Qué es un modelo de lenguaje?\nRespuesta:")
    pieces = list(model.stream(prompt, max_tokens=16))
    assert 1 < len(pieces) <= 16 and "".join(pieces).strip()
    assert model.info().name.endswith(".gguf")  # the model name came from the server's /models
    words = "".join(pieces).split()
    stop = " " + words[2]
    stopped = "".join(model.stream(TextPrompt(prompt.text, stop=(stop,)), max_tokens=16))
    assert stop not in stopped and len(stopped) < len("".join(pieces))


def test_streams_a_chat_through_the_real_server(servers: dict[str, str]) -> None:
    settings = Settings(llm_server_url=servers["smollm"], prompt_style="auto", llm_server_timeout=60)
    model = load_chat_model(settings)  # the settings pick the server backend
    assert isinstance(model, OpenAICompatibleChatModel) and model.style == "chat"
    prompt = ChatPrompt((Message("system", "You are a concise tutor."), Message("user", "What is BERT?")))
    pieces = list(model.stream(prompt, max_tokens=12))
    assert 1 < len(pieces) <= 12 and "".join(pieces).strip()


def test_the_server_takes_the_engines_repacking_decision(
    servers: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The AMX guard: the started server said it repacks exactly when this CPU's probe allows it."""
    from tutor.engine import probe_in_child

    report = probe_in_child()
    logs = tmp_path_factory.getbasetemp().glob("server-logs*/gemma.log")
    said = next(logs).read_text(errors="replace")
    assert f"reordenar pesos {'sí' if report.repack else 'no'} ({report.repack_reason})" in said
    if report.setting == "auto":
        assert report.repack is not report.amx  # repacking off exactly where the build or the CPU has AMX


def test_a_bad_repacking_setting_is_one_clear_line(tmp_path: Path) -> None:
    import os

    env = {**os.environ, "TUTOR_WEIGHT_REPACK": "maybe"}
    done = subprocess.run(
        [*LLAMA_SERVER, "--model", str(tmp_path / "x.gguf")], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("Error: Configuración no válida: TUTOR_WEIGHT_REPACK")
    assert "Traceback" not in done.stderr


def test_a_port_where_nothing_listens_is_a_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    model = OpenAICompatibleChatModel(url, model="x", style="completion", timeout=2, retries=1)
    with pytest.raises(ModelServerError) as caught:
        list(model.stream(TextPrompt("hola"), max_tokens=4))
    message = str(caught.value)
    assert url in message and "rechazada" in message and "2 intentos" in message
    assert "TUTOR_LLM_SERVER_URL" in message


class SilentServer:
    """Accepts connections, reads the request, then answers nothing (or one token) and never closes."""

    def __init__(self, first_event: dict | None = None) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        self.first_event, self.accepted, self._held = first_event, 0, []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self._held.append(conn)
            conn.recv(65536)
            if self.first_event is not None:
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n"
                    + b"data: "
                    + json.dumps(self.first_event).encode()
                    + b"\n\n"
                )

    def close(self) -> None:
        self.sock.close()
        for conn in self._held:
            conn.close()


def test_a_server_that_never_answers_times_out_after_retries() -> None:
    server = SilentServer()
    try:
        model = OpenAICompatibleChatModel(server.url, model="x", style="completion", timeout=0.5, retries=1)
        with pytest.raises(ModelServerError) as caught:
            list(model.stream(TextPrompt("hola"), max_tokens=4))
        assert server.url in str(caught.value) and "0.5 s" in str(caught.value)
        assert server.accepted == 2  # first try plus one retry
    finally:
        server.close()


def test_a_server_that_stalls_mid_answer_is_not_retried() -> None:
    server = SilentServer(first_event={"choices": [{"text": "Hola", "index": 0}]})
    try:
        model = OpenAICompatibleChatModel(server.url, model="x", style="completion", timeout=0.5, retries=2)
        stream = model.stream(TextPrompt("hola"), max_tokens=4)
        assert next(stream) == "Hola"
        with pytest.raises(ModelServerError, match="a mitad de la respuesta"):
            next(stream)
        assert server.accepted == 1  # a retry would repeat the text already shown
    finally:
        server.close()
