"""Faults while the tutor runs (issue 8, item 2): a model file removed or truncated, the index folder
deleted or damaged, a template broken on disk, SIGTERM during generation, two processes on one folder.

Real components: the packaged Gemma (a copy in tmp), real Chroma folders, the real `tutor serve`
process driven through gradio_client. The server part starts the app twice (about a minute).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import SMALL_COURSE, answer_outcome

from tutor.errors import TutorError
from tutor.pipeline import Tutor, build_tutor

REPO = Path(__file__).resolve().parent.parent
QUESTION = "¿qué cambió RoBERTa respecto a BERT?"


def final(tutor: Tutor, message: str = QUESTION):
    replies = list(tutor.answer(tutor.plan(message)))
    assert replies[-1].final and replies[-1].answer is not None
    return replies[-1]


# 1. The model file removed or truncated while the app runs.

RUNNING = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    from tutor.chat import LlamaCppModel
    from tutor.config import Settings
    from tutor.pipeline import build_tutor

    settings = Settings(max_tokens=24)
    copy = Path(sys.argv[1])
    tutor, _ = build_tutor(settings, model="none")
    tutor.model = LlamaCppModel(copy, n_ctx=1024, n_threads=1, n_threads_batch=1, seed=1234)

    def ask():
        reply = list(tutor.answer(tutor.plan("¿qué cambió RoBERTa respecto a BERT?")))[-1]
        a = reply.answer
        return {"fallback": a.fallback, "verified": a.verified, "generated": a.generated, "notice": a.notice,
                "answer": a.text, "text": reply.text}

    out = {"before": ask()}
    os.truncate(copy, copy.stat().st_size // 3)  # what `cp other.gguf $TUTOR_GGUF` does first
    out["truncated"] = ask()
    copy.unlink()
    out["deleted"] = ask()
    print(json.dumps(out))
    """
)


def test_model_file_truncated_then_deleted_while_running(course_settings, course_index, gemma_path, tmp_path) -> None:
    """Found: with llama.cpp's default mmap, truncating the GGUF under a running app killed it with
    SIGBUS (exit 135). The model is now read into memory (chat.py, use_mmap=False): the running app
    keeps generating from memory; the damage shows at the next start (next test)."""
    copy = tmp_path / "gemma.gguf"
    shutil.copy(gemma_path, copy)
    env = {**os.environ, "TUTOR_DATA_DIR": str(course_settings.data_dir),
           "TUTOR_KNOWLEDGE_DIR": str(course_settings.knowledge_dir), "TUTOR_EMBED_THREADS": "1"}  # fmt: skip
    out = subprocess.run([sys.executable, "-c", RUNNING, str(copy)], capture_output=True, text=True, env=env,
                         timeout=300, cwd=REPO)  # fmt: skip
    assert out.returncode == 0, f"exit {out.returncode}: {out.stderr[-2000:]}"
    runs = json.loads(out.stdout.strip().splitlines()[-1])
    for name, run in runs.items():
        assert "(§3.3.3)" in run["text"] or "§3.3.3" in run["text"], (name, run)
        assert run["generated"], f"{name}: the loaded model keeps generating from memory"
        outcome = answer_outcome(SimpleNamespace(**{k: run[k] for k in ("verified", "fallback", "generated")},
                                                 text=run["answer"]))  # fmt: skip
        assert bool(run["notice"]) == (outcome == "extractive"), "a quoted answer says why"
    assert runs["truncated"]["generated"] == runs["before"]["generated"], "greedy: same text as before the damage"


@pytest.mark.parametrize("damage", ["truncated", "deleted", "not_gguf"])
def test_next_start_with_a_broken_model_file_answers_from_the_course(course_settings, course_index, gemma_path,
                                                                      tmp_path, damage) -> None:  # fmt: skip
    broken = tmp_path / "gemma.gguf"
    if damage == "truncated":
        with gemma_path.open("rb") as src:
            broken.write_bytes(src.read(gemma_path.stat().st_size // 3))
    elif damage == "not_gguf":
        broken.write_text("<html>404 Not Found</html>")
    settings = course_settings.model_copy(update={"gguf": broken, "n_ctx": 1024, "max_tokens": 24})
    tutor, notices = build_tutor(settings, model="auto", index=course_index)
    assert tutor.model is None and len(notices) == 1
    assert str(broken) in notices[0] and "citando el curso" in notices[0], notices
    reply = final(tutor)
    assert reply.answer.fallback == "extractive" and "(§3.3.3)" in reply.answer.text


def test_a_truncated_packaged_model_is_assembled_again_at_the_next_start(gemma_path, tmp_path) -> None:
    """The packaged Gemma lives in the data folder: a damaged copy fails its size stamp and is rebuilt."""
    from tutor.gguf_file import read_header
    from tutor.models import packaged_gguf

    models = tmp_path / "models"
    models.mkdir()
    target = models / gemma_path.name
    shutil.copy2(gemma_path, target)
    shutil.copy2(gemma_path.with_name(gemma_path.name + ".verified"), models)
    assert packaged_gguf(tmp_path) == target and target.stat().st_size == gemma_path.stat().st_size
    os.truncate(target, 1_000_000)
    assert packaged_gguf(tmp_path) == target
    assert target.stat().st_size == gemma_path.stat().st_size and read_header(target).architecture == "gemma3"
    assert not [p for p in models.iterdir() if p.name.startswith(".assembling-")], "no half-written file is left"


# 2. The index folder deleted or damaged while the app runs.


@pytest.fixture
def small_tutor(small_settings, e5) -> Tutor:
    from tutor.index import Index, ingest

    ingest(small_settings, e5, progress=False)
    tutor, notices = build_tutor(small_settings, model="none", index=Index.open(small_settings, e5))
    assert notices == []
    return tutor


def damage_index(index_dir: Path, how: str) -> None:
    chroma = index_dir / "chroma"
    if how == "folder_deleted":
        shutil.rmtree(index_dir)
    elif how == "sqlite_garbage":
        db = chroma / "chroma.sqlite3"
        db.write_bytes(os.urandom(db.stat().st_size))
    elif how == "sqlite_emptied":
        (chroma / "chroma.sqlite3").write_bytes(b"")
    elif how == "vectors_deleted":
        for folder in (p for p in chroma.iterdir() if p.is_dir()):
            shutil.rmtree(folder)


@pytest.mark.parametrize("how", ["folder_deleted", "sqlite_garbage", "sqlite_emptied", "vectors_deleted"])
def test_a_damaged_index_gives_the_rebuild_hint_and_a_rebuild_resumes_without_restart(
    small_settings, e5, small_tutor, how
) -> None:
    """Found: a deleted folder (or deleted vector files) keeps answering from what Chroma holds open
    (Linux keeps unlinked files readable); garbage in its database gives IndexNotReady with the fix.
    Either way no other exception reaches the caller, and the next start says what to run."""
    from tutor.app.ui import Conversation
    from tutor.index import Index, ingest

    assert "(§3.3.3)" in final(small_tutor).answer.text
    damage_index(small_settings.index_dir, how)
    for _ in range(2):
        try:
            reply = final(small_tutor)
        except TutorError as exc:
            assert "tutor ingest --rebuild" in str(exc)
        else:
            assert "(§3.3.3)" in reply.answer.text, "what is still open keeps answering"
    # The page shows the same message instead of a traceback, and the conversation goes on.
    text, turns = list(Conversation(small_tutor).reply(QUESTION, "explain", []))[-1]
    assert turns is not None and "Traceback" not in text
    assert "(§3.3.3)" in text or "tutor ingest --rebuild" in text
    # The next start names the fix (tutor serve and tutor chat rebuild it themselves).
    if how != "vectors_deleted":  # the manifest and the database still agree: Chroma rebuilds HNSW on open
        with pytest.raises(TutorError, match="tutor ingest --rebuild"):
            Index.open(small_settings, e5)
    ingest(small_settings, e5, rebuild=True, progress=False)
    small_tutor.use_index(Index.open(small_settings, e5))
    for _ in range(2):
        assert "(§3.3.3)" in final(small_tutor).answer.text


# 3. A template broken on disk while the app runs: the last good version keeps serving.


def test_a_broken_or_deleted_template_keeps_its_last_good_version(course_settings, course_index, tmp_path,
                                                                  caplog) -> None:  # fmt: skip
    from tutor.chat import EchoModel
    from tutor.prompts import PromptLibrary

    root = tmp_path / "prompts"
    shutil.copytree(REPO / "prompts", root)
    tutor, _ = build_tutor(course_settings.model_copy(update={"max_tokens": 16}), model="none", index=course_index)
    tutor.prompts = tutor.extractor.prompts = PromptLibrary(root)
    assert tutor.prompts.check() == []
    tutor.model = EchoModel(style="completion")
    good_prompt = tutor.plan(QUESTION).prompt
    good = final(tutor).text
    assert "**Fuentes**" in good

    answer = root / "completion" / "answer.md"
    answer.write_text(answer.read_text(encoding="utf-8").replace("$context", "$contexto"), encoding="utf-8")
    intro = root / "replies" / "es" / "extractive_intro.md"
    intro.write_text("sin cabecera: $roto", encoding="utf-8")
    (root / "replies" / "es" / "sources_heading.md").unlink()
    with caplog.at_level(logging.WARNING):
        assert tutor.plan(QUESTION).prompt == good_prompt, "the model gets the last good template"
        again = final(tutor).text
    assert again == good, "the student sees the same reply"
    problems = tutor.prompts.check()
    assert any("prompts/completion/answer.md: line" in p and "unknown variable 'contexto'" in p for p in problems)
    assert any("prompts/replies/es/extractive_intro.md: line 1" in p for p in problems)
    assert any("sources_heading.md" in p and "ya no existe" in p for p in problems)
    assert "unknown variable 'contexto'" in caplog.text, "the error is logged"

    answer.write_text(answer.read_text(encoding="utf-8").replace("$contexto", "$context").replace(
        "Material del curso: $context", "Texto del curso: $context"), encoding="utf-8")  # fmt: skip
    assert "Texto del curso:" in tutor.plan(QUESTION).prompt.text, "a fixed file is served at once"
    assert "completion/answer" not in tutor.prompts.errors


# 4 and 5. The real app: SIGTERM during generation, and a second app or ingest on the same folder.


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class App:
    def __init__(self, env: dict[str, str], data_dir: Path) -> None:
        self.env, self.data_dir, self.port = env, data_dir, free_port()
        self.log = data_dir.parent / f"serve-{self.port}.log"
        self.proc = subprocess.Popen(
            [str(REPO / ".venv" / "bin" / "tutor"), "serve", "--port", str(self.port), "--model", "auto"],
            env=env, stdout=self.log.open("w"), stderr=subprocess.STDOUT, cwd=REPO,
        )  # fmt: skip
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"the app exited: {self.output()}"
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.5)
        raise AssertionError(f"the app did not start: {self.output()}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tutor", *args], capture_output=True, text=True, env=env,
                          timeout=300, cwd=REPO)  # fmt: skip


@pytest.fixture(scope="module")
def app_env(tmp_path_factory, gemma_path) -> tuple[dict[str, str], Path]:
    """A data folder holding the index of a small course; the app generates with the packaged Gemma."""
    root = tmp_path_factory.mktemp("app")
    knowledge, data = root / "knowledge", root / "data"
    knowledge.mkdir()
    for name, text in SMALL_COURSE.items():
        (knowledge / name).write_text(text, encoding="utf-8")
    env = {**os.environ, "TUTOR_DATA_DIR": str(data), "TUTOR_KNOWLEDGE_DIR": str(knowledge),
           "TUTOR_GGUF": str(gemma_path), "TUTOR_N_THREADS": "1", "TUTOR_N_THREADS_BATCH": "1",
           "TUTOR_EMBED_THREADS": "1", "TUTOR_MAX_TOKENS": "256", "TUTOR_N_CTX": "2048"}  # fmt: skip
    env.pop("TUTOR_DEBUG", None)
    out = cli("ingest", "--quiet", env=env)
    assert out.returncode == 0, out.stderr
    return env, data


@pytest.fixture(scope="module")
def app(app_env):
    running = App(*app_env)
    yield running
    running.stop()


def test_a_second_app_or_an_ingest_on_the_same_folder_is_refused(app, app_env) -> None:
    """Decided: one app per data folder (tutor/app/lock.py). Read-only commands still work beside it."""
    env, data = app_env
    second = subprocess.run([str(REPO / ".venv" / "bin" / "tutor"), "serve", "--port", str(free_port())],
                            capture_output=True, text=True, env=env, timeout=120, cwd=REPO)  # fmt: skip
    assert second.returncode == 2, second.stdout + second.stderr
    assert "en uso por otro tutor" in second.stderr and f"proceso {app.proc.pid}" in second.stderr
    assert "Traceback" not in second.stderr and len(second.stderr.strip().splitlines()) == 1
    for args in (["ingest", "--quiet"], ["ingest", "--rebuild", "--quiet"]):
        refused = cli(*args, env=env)
        assert refused.returncode == 2 and "en uso por otro tutor" in refused.stderr, refused.stderr
    assert (data / "index" / "manifest.json").is_file(), "the refused rebuild deleted nothing"
    assert cli("retrieve", "enmascaramiento dinámico", env=env).stdout.startswith("1. §3.3.3")
    assert app.proc.poll() is None


def engine_of(pid: int) -> int:
    """The pid of the engine process (`python -m tutor.engine`) among the children of `pid`."""
    children = []
    for task in os.listdir(f"/proc/{pid}/task"):
        children += Path(f"/proc/{pid}/task/{task}/children").read_text().split()
    engines = [int(c) for c in children if b"tutor.engine" in Path(f"/proc/{c}/cmdline").read_bytes()]
    assert len(engines) == 1, (pid, children)
    return engines[0]


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def segfault_while_generating(pid: int) -> int:
    """SIGSEGV to `pid`'s engine once it is busy (it used CPU since now: an idle engine uses none)."""
    engine = engine_of(pid)
    start = cpu_ticks(engine)
    deadline = time.monotonic() + 60
    while cpu_ticks(engine) < start + 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(engine, signal.SIGSEGV)
    return engine


def crash_notice(language: str = "es") -> str:
    from tutor.prompts import PromptLibrary

    return PromptLibrary(REPO / "prompts").reply("engine_crashed", language)


def test_the_served_app_survives_a_segfault_of_its_engine(app) -> None:
    """The student being answered reads the course with a notice; the app, and the next answer, go on."""
    from gradio_client import Client

    client = Client(app.url, verbose=False)
    job = client.submit(QUESTION, "explain", [], api_name="/chat")
    deadline = time.monotonic() + 120
    while not job.outputs() and time.monotonic() < deadline:  # the course's sentences come first
        time.sleep(0.02)
    killed = segfault_while_generating(app.proc.pid)
    text, turns = job.result(timeout=120)
    assert crash_notice() in text and "§3.3.3" in text, text
    assert turns[-1]["role"] == "assistant" and app.proc.poll() is None, "the app is still serving"
    text, turns = client.predict("¿qué es RAG?", "explain", turns, api_name="/chat")
    assert "§4.3.1" in text and crash_notice() not in text
    assert engine_of(app.proc.pid) != killed, "a new engine answered"
    assert "Traceback" not in app.output()


def test_tutor_chat_survives_a_segfault_of_its_engine(app_env) -> None:
    env, _ = app_env
    chat = subprocess.Popen([sys.executable, "-m", "tutor", "chat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)  # fmt: skip
    try:
        assert chat.stdin is not None and chat.stdout is not None
        chat.stdin.write(QUESTION + "\n")
        chat.stdin.flush()
        out = ""
        while "(buscando en el curso" not in out:  # the model runs after this line
            assert chat.poll() is None
            out += chat.stdout.readline()
        segfault_while_generating(chat.pid)
        rest, err = chat.communicate("¿qué es RAG?\n", timeout=240)  # then end of input: the chat ends
    finally:
        chat.kill()
    assert chat.returncode == 0, err
    out += rest
    _, crashed, after = out.split("(buscando en el curso…)")
    assert crash_notice() in crashed and "§3.3.3" in crashed, out  # the course's sentences, and why
    assert "§4.3.1" in after and crash_notice() not in after, out
    assert "Traceback" not in err and "Segmentation fault" not in err, err


def leftovers(folder: Path) -> list[str]:
    """Half-written files: temporary names of the tutor's atomic writes, and SQLite's rollback journals."""
    patterns = ("*.tmp", ".manifest-*", ".assembling-*", "*-journal", "*.partial")
    return sorted(str(p.relative_to(folder)) for pattern in patterns for p in folder.rglob(pattern))


def test_sigterm_during_generation_stops_cleanly_and_the_next_start_is_clean(app, app_env) -> None:
    from gradio_client import Client

    env, data = app_env
    job = Client(app.url, verbose=False).submit(QUESTION, "explain", [], api_name="/chat")
    deadline = time.monotonic() + 120
    while not job.outputs() and time.monotonic() < deadline:  # the course's sentences come first,
        time.sleep(0.05)  # then the model generates
    assert job.outputs(), app.output()
    time.sleep(0.5)
    assert not job.done(), "still generating when the signal arrives"
    started = time.monotonic()
    app.proc.send_signal(signal.SIGTERM)
    code = app.proc.wait(timeout=30)
    took = time.monotonic() - started
    print(f"SIGTERM during generation: exit {code} after {took:.1f} s")
    assert code == 0 and took < 10, (code, took, app.output())
    assert "Traceback" not in app.output()
    assert leftovers(data) == []

    again = App(*app_env)
    try:
        assert "en uso" not in again.output(), "the lock died with the first process"
        text, turns = Client(again.url, verbose=False).predict("¿qué es RAG?", "explain", [], api_name="/chat")
        assert "§4.3.1" in text and turns[-1]["role"] == "assistant"
        again.proc.send_signal(signal.SIGTERM)
        assert again.proc.wait(timeout=30) == 0, again.output()
    finally:
        again.stop()
    assert leftovers(data) == []
