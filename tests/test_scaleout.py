"""The classroom topology on loopback: one model server, one Chroma server, two tutor front ends, nginx.

`python -m llama_cpp.server` serves the packaged Gemma file; `chroma run` holds the course vectors,
written once by `ingest` with TUTOR_CHROMA_URL; two `tutor serve` processes use both by URL; nginx
(the documented docs/nginx-tutor.conf) spreads students over them and keeps each on its own. Four
students ask two questions each through nginx; every reply must be an answer with citations, both
front ends must have served, and nothing may be left running afterwards. Skipped only when the
`nginx` (Debian package `nginx`) or `chroma` (chromadb) programs are missing.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import LLAMA_SERVER

from tutor.config import Settings

REPO = Path(__file__).resolve().parent.parent
NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/sbin/nginx") if os.path.exists(p)), None)
CHROMA = Path(sys.executable).with_name("chroma")
TUTOR = Path(sys.executable).with_name("tutor")
QUESTIONS = [
    ("¿Qué es BERT?", "¿Qué cambió RoBERTa respecto a BERT?"),
    ("¿Qué es RAG?", "¿Por qué RAG reduce las alucinaciones?"),
    ("¿Qué mejoras tiene RoBERTa?", "¿Qué es BERT?"),
    ("¿Qué es la cuantificación de los pesos?", "¿Qué es RAG?"),
]

MISSING = [why for why, missing in (
    ("nginx is not installed (apt-get install -y nginx)", NGINX is None),
    (f"the chroma program is missing ({CHROMA}): pip install chromadb", not CHROMA.exists()),
) if missing]  # fmt: skip


def free_ports(k: int) -> list[int]:
    """k distinct free loopback ports (held open together, so none is handed out twice)."""
    socks = [socket.socket() for _ in range(k)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


class Topology:
    """Starts processes with their logs in a folder; stop() ends every one of them and their children."""

    def __init__(self, root: Path) -> None:
        self.root, self.procs, self.children = root, [], set()

    def start(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        with (self.root / f"{name}.log").open("wb") as log:  # never a pipe: a full pipe stalls the server
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                                    start_new_session=True)  # fmt: skip
        self.procs.append((name, proc))
        return proc

    def wait_http(self, name: str, url: str, timeout: float = 120) -> None:
        proc = dict(self.procs)[name]
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited ({proc.returncode}):\n{self.log(name)}")
            try:
                with opener.open(url, timeout=2):
                    return
            except OSError:
                time.sleep(0.3)
        raise AssertionError(f"{name} did not answer at {url} in {timeout:.0f} s:\n{self.log(name)}")

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")[-3000:]

    def remember_children(self) -> None:
        for _, proc in self.procs:
            self.children |= set(_descendants(proc.pid))

    def stop(self) -> None:
        self.remember_children()
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for _, proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # its own session: the process and its children only
                proc.wait(5)


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as handle:
                    kids = [int(c) for c in handle.read().split()]
                found += kids
                todo += kids
        except OSError:
            pass
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def nginx_conf(prefix: Path, listen: str, frontends: list[str]) -> str:
    template = (REPO / "docs" / "nginx-tutor.conf").read_text(encoding="utf-8")
    return (
        template.replace("@PREFIX@", str(prefix))
        .replace("@LISTEN@", listen)
        .replace("@SERVERS@", "\n        ".join(f"server {f};" for f in frontends))
        .replace("@STICKY@", "\n        ".join(f'"{f}" {f};' for f in frontends))
    )


@pytest.fixture
def topology(tmp_path: Path, small_settings: Settings, gemma_path: Path, e5) -> Iterator[dict]:
    from tutor.index import ingest

    top = Topology(tmp_path)
    chroma_port, llm_port, proxy_port, *fe_ports = free_ports(5)
    chroma_url, llm_url = f"http://127.0.0.1:{chroma_port}", f"http://127.0.0.1:{llm_port}/v1"
    model = tmp_path / "gemma.gguf"
    model.symlink_to(gemma_path)  # every command line names tmp_path: the leftover check below finds them
    try:
        top.start("chroma", [str(CHROMA), "run", "--path", str(tmp_path / "chroma"), "--host", "127.0.0.1",
                             "--port", str(chroma_port)])  # fmt: skip
        top.start("llm", [*LLAMA_SERVER, "--model", str(model), "--host", "127.0.0.1",
                          "--port", str(llm_port), "--n_threads", "1", "--n_ctx", "2048"])  # fmt: skip
        top.wait_http("chroma", f"{chroma_url}/api/v2/heartbeat", 60)
        # The writer step, once: the course's vectors go to the Chroma server.
        writer = small_settings.model_copy(update={"data_dir": tmp_path / "writer", "chroma_url": chroma_url})
        report = ingest(writer, e5, progress=False)
        assert report.embedded == report.chunks > 0
        env = {
            "TUTOR_CHROMA_URL": chroma_url,
            "TUTOR_LLM_SERVER_URL": llm_url,
            "TUTOR_PROMPT_STYLE": "completion",  # the packaged Gemma is a base model
            "TUTOR_N_CTX": "2048",
            "TUTOR_MAX_TOKENS": "64",
            "TUTOR_EMBED_THREADS": "1",
            "TUTOR_KNOWLEDGE_DIR": str(small_settings.knowledge_dir),
        }
        for n, port in enumerate(fe_ports):
            top.start(f"tutor{n}", [str(TUTOR), "--data-dir", str(tmp_path / f"fe{n}"), "serve", "--port", str(port)],
                      env)  # fmt: skip
        conf = tmp_path / "nginx.conf"
        listen = f"127.0.0.1:{proxy_port}"
        conf.write_text(nginx_conf(tmp_path, listen, [f"127.0.0.1:{p}" for p in fe_ports]), encoding="utf-8")
        top.start("nginx", [NGINX, "-c", str(conf), "-p", str(tmp_path), "-e", str(tmp_path / "error.log")])
        top.wait_http("llm", f"{llm_url}/models", 120)
        for n, port in enumerate(fe_ports):
            top.wait_http(f"tutor{n}", f"http://127.0.0.1:{port}/config", 150)
        top.wait_http("nginx", f"http://{listen}/config", 30)
        top.remember_children()
        yield {"url": f"http://{listen}/", "top": top, "root": tmp_path, "frontends": fe_ports}
    finally:
        top.stop()


@pytest.mark.skipif(bool(MISSING), reason="; ".join(MISSING))
def test_classroom_topology_answers_through_nginx(topology: dict) -> None:
    from gradio_client import Client

    started = time.monotonic()
    clients = [Client(topology["url"], verbose=False) for _ in QUESTIONS]  # one after another: round-robin
    results: dict[int, list] = {}

    def student(n: int) -> None:
        history: list = []
        results[n] = []
        for question in QUESTIONS[n]:
            text, turns = clients[n].predict(question, "explain", history, api_name="/chat")
            meta = turns[-1]["meta"]
            results[n].append((question, text, meta))
            history = turns

    threads = [threading.Thread(target=student, args=(n,)) for n in range(len(QUESTIONS))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    replies = [r for n in sorted(results) for r in results[n]]
    assert len(replies) == 2 * len(QUESTIONS), "a student's conversation stopped early"
    for question, text, meta in replies:
        assert meta["kind"] == "answer", (question, meta)
        assert meta["citations"] and meta["id"], (question, meta)
        assert "§" in text, (question, text[:300])
    # Both front ends served students, and each student stayed on one front end.
    joins = [line for line in (topology["root"] / "access.log").read_text().splitlines() if "/queue/join" in line]
    used = {line.rsplit("upstream=", 1)[1] for line in joins}
    assert used == {f"127.0.0.1:{p}" for p in topology["frontends"]}, joins
    # The front ends generated on the model server and searched the Chroma server: no local store.
    assert "/v1/completions" in (topology["root"] / "llm.log").read_text(errors="replace")
    assert not any((topology["root"] / f"fe{n}" / "index" / "chroma").exists() for n in range(2))
    print(f"\n{len(replies)} answers through nginx in {time.monotonic() - started:.1f} s; front ends used: {used}")

    assert_nothing_left(topology)


def assert_nothing_left(topology: dict) -> None:
    """Stop the topology as its fixture would, and check that no process of it is still running."""
    top: Topology = topology["top"]
    top.remember_children()
    pids = [p.pid for _, p in top.procs] + sorted(top.children)
    assert all(p.poll() is None for _, p in top.procs), "a server stopped on its own"
    top.stop()
    assert not [pid for pid in pids if _alive(pid)], "processes left running after the topology stopped"
    mine = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(topology["root"]) in cmdline and _alive(int(entry)):
            mine.append(cmdline)
    assert not mine, mine


def test_a_chroma_server_that_is_down_is_reported_not_rebuilt(small_settings: Settings, e5) -> None:
    from tutor.errors import TutorError
    from tutor.index import ingest

    settings = small_settings.model_copy(update={"chroma_url": f"http://127.0.0.1:{free_ports(1)[0]}"})
    with pytest.raises(TutorError, match="TUTOR_CHROMA_URL"):
        ingest(settings, e5, progress=False)
    assert not (settings.index_dir / "chroma").exists()  # no local store appeared in its place
