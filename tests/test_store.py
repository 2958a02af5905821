"""The local store: migrations, WAL, what is (not) kept, a locked or full file, export and purge."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tutor.app.store import MIGRATIONS, VERSION, InvalidFeedback, Store
from tutor.cli import main
from tutor.config import Settings
from tutor.errors import StoreError, TutorError
from tutor.pipeline import Answer, Plan
from tutor.types import Chunk, GateDecision, Passage


def answer(question: str = "¿Qué cambió RoBERTa?", *, sections=(("3.3.3", "RoBERTa"), ("3.3.1", "BERT")),
           label: str = "on_topic", reason: str = "course", kind: str = "answer",
           fallback: str = "none") -> Answer:  # fmt: skip
    passages = tuple(
        Passage(Chunk(f"c.md#{sid}#0", "c.md", sid, title, 0, "texto", "h"), 1.0, 1, 1) for sid, title in sections
    )
    gate = GateDecision(label, 0.9, reason)  # type: ignore[arg-type]
    plan = Plan(question, (), "explain", "es", gate, passages=passages, kind=kind)
    return Answer("respuesta", plan, verified=fallback == "none", fallback=fallback, timings={"total_ms": 42.0})  # type: ignore[arg-type]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


def test_new_file_is_migrated_to_the_latest_schema_in_wal_mode(settings: Settings) -> None:
    store = Store.open(settings)
    assert store.path == settings.data_dir / "tutor.sqlite3" == settings.store_path
    assert store.schema_version() == VERSION == 2
    assert store.journal_mode() == "wal"
    Store.open(settings)  # opening again is a no-op


def test_a_version_1_file_is_migrated_keeping_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "tutor.sqlite3"
    conn = sqlite3.connect(path)
    for statement in MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO answers (id, created, language, gate_label, gate_reason, kind, mode, sections, question) "
                 "VALUES ('old1', '2024-03-01 10:00:00', 'es', 'on_topic', 'course', 'answer', 'explain', "
                 "'[\"4.3.1\", \"3.3.1\"]', '¿Qué es RAG?')")  # fmt: skip
    conn.execute("INSERT INTO feedback VALUES ('old1', '2024-03-01 10:01:00', 'down', 'confusa')")
    conn.commit()
    conn.close()

    store = Store(path)
    assert store.schema_version() == 2
    figures = store.analytics()
    assert figures.per_section == [("4.3.1", "", 1)]  # the best section of the old answer, now countable
    assert figures.thumbs_down[0]["comment"] == "confusa" and figures.thumbs_down[0]["question"] == "¿Qué es RAG?"


def test_a_file_from_a_newer_tutor_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tutor.sqlite3"
    sqlite3.connect(path).execute(f"PRAGMA user_version = {VERSION + 1}").connection.close()
    with pytest.raises(StoreError, match="versión más nueva"):
        Store(path)


def test_a_damaged_file_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "tutor.sqlite3"
    path.write_bytes(b"esto no es una base de datos" * 200)
    with pytest.raises(StoreError, match="dañado"):
        Store(path)


def test_record_and_query_with_date_filters(settings: Settings) -> None:
    store = Store.open(settings)
    a1, a2 = answer(), answer("¿Qué es BERT?", sections=(("3.3.1", "BERT"),), fallback="extractive")
    for item in (a1, a2, answer("hola", sections=(), label="off_topic", reason="chitchat", kind="chitchat"),
                 answer("cómo hackeo", sections=(), label="unsafe", reason="harm", kind="refusal")):  # fmt: skip
        store.record_answer(item)
    store.record_feedback(a1.plan.id, "down")
    store.record_feedback(a1.plan.id, "down", "No cita la sección 3.3.3")  # the comment arrives second
    store.record_feedback(a2.plan.id, "up")

    figures = store.analytics()
    assert figures.answers == 4
    assert figures.per_section == [("3.3.1", "BERT", 1), ("3.3.3", "RoBERTa", 1)]
    assert set(figures.gate) == {("on_topic", "course", 2), ("off_topic", "chitchat", 1), ("unsafe", "harm", 1)}
    assert figures.thumbs_up == 1
    [down] = figures.thumbs_down
    assert down["comment"] == "No cita la sección 3.3.3" and down["question"] == "¿Qué cambió RoBERTa?"
    assert down["sections"] == ["3.3.3", "3.3.1"]
    assert (figures.course_answers, figures.extractive, figures.fallback_rate) == (2, 1, 0.5)

    today = time.strftime("%Y-%m-%d")
    assert store.analytics(today, today).answers == 4
    assert store.analytics("2000-01-01", "2000-12-31").answers == 0
    assert store.analytics(until="2000-12-31").thumbs_down == []
    with pytest.raises(TutorError, match="AAAA-MM-DD"):
        store.analytics("31/12/2024")


def test_feedback_is_validated_and_comments_are_limited(settings: Settings) -> None:
    store = Store.open(settings)
    with pytest.raises(InvalidFeedback):
        store.record_feedback("abc", "meh")
    with pytest.raises(InvalidFeedback):
        store.record_feedback("'; DROP TABLE answers; --", "up")
    store.record_feedback("abc", "down", "x" * 10_000 + "\x00")
    assert len(store.analytics().thumbs_down[0]["comment"]) == 2000


def test_without_store_questions_no_text_is_kept(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, store_questions=False)
    store = Store.open(settings)
    item = answer("¿Pregunta privadísima sobre RoBERTa?")
    store.record_answer(item)
    store.record_feedback(item.plan.id, "down", "comentario")
    assert store.analytics().per_section == [("3.3.3", "RoBERTa", 1)]  # counts still work
    assert store.rows()[0]["question"] is None
    assert b"privad" not in b"".join(p.read_bytes() for p in tmp_path.glob("tutor.sqlite3*"))


def test_no_student_identity_is_stored(settings: Settings) -> None:
    store = Store.open(settings)
    conn = sqlite3.connect(store.path)
    columns = {row[1] for t in ("answers", "feedback", "answer_sections")
               for row in conn.execute(f"PRAGMA table_info({t})")}  # fmt: skip
    assert not columns & {"ip", "address", "session", "session_hash", "user", "student", "client"}


def _hold_lock(path: Path, seconds: float) -> subprocess.Popen:
    """Another process holding the file's write lock (BEGIN EXCLUSIVE) for `seconds`."""
    code = (
        "import sqlite3, sys, time\n"
        "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "c.execute('BEGIN EXCLUSIVE')\n"
        "print('locked', flush=True)\n"
        "time.sleep(float(sys.argv[2]))\n"
        "c.execute('COMMIT')\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(path), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_a_lock_held_by_another_process_is_retried_then_reported(settings: Settings) -> None:
    store = Store.open(settings, busy_timeout=0.2, attempts=3)
    item = answer()
    holder = _hold_lock(store.path, 5)
    try:
        started = time.perf_counter()
        with pytest.raises(StoreError, match="bloqueado por otro proceso"):
            store.record_answer(item)
        assert time.perf_counter() - started >= 0.6  # three attempts, each waiting for the lock
        assert store.analytics().answers == 0  # reading still works in WAL mode
    finally:
        holder.kill()
        holder.wait()
    store.record_answer(item)  # the lock is gone: the next write goes through
    assert store.analytics().answers == 1


def test_a_short_lock_is_waited_out(settings: Settings) -> None:
    store = Store.open(settings, busy_timeout=0.3, attempts=4)
    holder = _hold_lock(store.path, 0.5)
    try:
        store.record_feedback("abc123", "up")  # retried until the other process commits
    finally:
        holder.wait()
    assert store.analytics().thumbs_up == 1


def test_a_full_store_is_a_store_error(tmp_path: Path) -> None:
    store = Store.open(Settings(data_dir=tmp_path, store_max_mb=0.05))  # ~12 pages: the schema and a few rows
    with pytest.raises(StoreError, match="lleno"):
        for n in range(200):
            store.record_answer(answer(f"pregunta {n} " + "palabra " * 200))
    assert store.analytics().answers > 0  # what fitted is still readable


def test_export_and_purge_commands(settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = Store.open(settings)
    item = answer('=HYPERLINK("http://x")')  # a formula a spreadsheet must not run
    store.record_answer(item)
    store.record_feedback(item.plan.id, "down", "mal")
    data_dir = ["--data-dir", str(settings.data_dir)]

    assert main([*data_dir, "data", "export"]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert exported["schema_version"] == VERSION
    [row] = exported["rows"]
    assert (row["answer_id"], row["rating"], row["comment"]) == (item.plan.id, "down", "mal")

    out = tmp_path / "copia.csv"
    assert main([*data_dir, "data", "export", "--out", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert text.splitlines()[0].startswith("answer_id,created,language,gate_label")
    assert "'=HYPERLINK" in text

    assert main([*data_dir, "data", "purge"]) == 1  # not a terminal, no --yes: nothing erased
    assert store.analytics().answers == 1
    capsys.readouterr()
    assert main([*data_dir, "data", "purge", "--yes"]) == 0
    assert "1 respuestas y 1 valoraciones" in capsys.readouterr().out
    assert store.rows() == []
    assert b"HYPERLINK" not in b"".join(p.read_bytes() for p in settings.data_dir.glob("tutor.sqlite3*"))
