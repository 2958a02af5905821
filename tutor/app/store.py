"""The local store: feedback and analytics events in one SQLite file of the data folder.

Input: finished answers (`record_answer`) and thumbs up/down with comments (`record_feedback`).
Output: the instructor panel's figures (`analytics`), exports (JSON or CSV) and `purge`.
One file, WAL mode (readers never wait for the writer), schema versioned with PRAGMA user_version
and an ordered list of migrations. A connection per call, so any Gradio worker thread may use it.
A locked, full or damaged file becomes a StoreError the chat catches and carries on.
It stores no student identity (no address, no session id), and no question text when
TUTOR_STORE_QUESTIONS=false. It never sends anything anywhere.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from tutor.errors import StoreError, TutorError

if TYPE_CHECKING:
    from tutor.config import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

FILE_NAME = "tutor.sqlite3"
MAX_COMMENT = 2000  # characters kept of a feedback comment
MAX_QUESTION = 4000  # characters kept of a question
_ANSWER_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

# Each migration is a tuple of statements, applied in order in one transaction that also sets
# user_version. Never edit a released step: append a new one (a file at version N gets N+1...).
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # 1: answers and feedback
        """CREATE TABLE answers (
            id TEXT PRIMARY KEY,
            created TEXT NOT NULL,              -- local time of the machine, 'YYYY-MM-DD HH:MM:SS'
            language TEXT NOT NULL,
            gate_label TEXT NOT NULL,           -- on_topic | off_topic | unsafe
            gate_reason TEXT NOT NULL,
            kind TEXT NOT NULL,                 -- answer | hint | refusal | redirect | ...
            mode TEXT NOT NULL,
            sections TEXT NOT NULL DEFAULT '[]',  -- JSON list of cited section ids, best first
            fallback TEXT NOT NULL DEFAULT 'none',
            verified INTEGER NOT NULL DEFAULT 0,
            total_ms REAL,
            question TEXT                       -- NULL when TUTOR_STORE_QUESTIONS=false
        )""",
        """CREATE TABLE feedback (
            answer_id TEXT PRIMARY KEY,         -- one rating per answer: the latest wins
            created TEXT NOT NULL,
            rating TEXT NOT NULL CHECK (rating IN ('up', 'down')),
            comment TEXT NOT NULL DEFAULT ''
        )""",
    ),
    (  # 2: one row per cited section, with its title, so the panel can count by section; dates indexed
        """CREATE TABLE answer_sections (
            answer_id TEXT NOT NULL REFERENCES answers(id) ON DELETE CASCADE,
            rank INTEGER NOT NULL,
            section_id TEXT NOT NULL,
            title TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (answer_id, rank)
        )""",
        """INSERT INTO answer_sections (answer_id, rank, section_id)
            SELECT a.id, CAST(j.key AS INTEGER), j.value FROM answers a, json_each(a.sections) j
            WHERE json_valid(a.sections)""",
        "CREATE INDEX answers_created ON answers(created)",
        "CREATE INDEX answer_sections_section ON answer_sections(section_id)",
        "CREATE INDEX feedback_created ON feedback(created)",
    ),
)
VERSION = len(MIGRATIONS)

_EXPORT_COLUMNS = ("answer_id", "created", "language", "gate_label", "gate_reason", "kind", "mode", "sections",
                   "fallback", "verified", "total_ms", "question", "rating", "comment", "feedback_created")  # fmt: skip


@dataclass(frozen=True)
class Analytics:
    """The instructor panel's figures for one date range (None = unbounded)."""

    since: date | None
    until: date | None
    answers: int  # recorded replies, any kind
    per_section: list[tuple[str, str, int]]  # (section id, title, questions whose best source it was)
    gate: list[tuple[str, str, int]]  # (label, reason, count)
    thumbs_up: int
    thumbs_down: list[dict[str, Any]]  # created, answer_id, comment, question (None when not stored), sections
    course_answers: int  # replies that answered from the course (kind "answer")
    extractive: int  # of those, how many were the course's own sentences (the model's text not verified)

    @property
    def fallback_rate(self) -> float | None:
        return self.extractive / self.course_answers if self.course_answers else None


class Store:
    """Feedback and analytics events in one SQLite file; every method may raise StoreError."""

    def __init__(
        self,
        path: Path,
        *,
        store_questions: bool = True,
        max_bytes: int | None = None,
        busy_timeout: float = 1.0,
        attempts: int = 3,
    ) -> None:
        self.path = Path(path)
        self.store_questions = store_questions
        self.max_bytes = max_bytes
        self.busy_timeout = busy_timeout
        self.attempts = max(1, attempts)
        self._setup()

    @classmethod
    def open(cls, settings: Settings, **options: Any) -> Store:
        """The store of `settings.data_dir`, created and migrated if needed."""
        try:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"No se puede crear la carpeta de datos «{settings.data_dir}» ({exc.strerror}).") from exc
        options.setdefault("store_questions", settings.store_questions)
        options.setdefault("max_bytes", int(settings.store_max_mb * 1024 * 1024))
        return cls(settings.data_dir / FILE_NAME, **options)

    # Writing.

    def record_answer(self, answer: Any) -> None:
        """One finished reply (a tutor.pipeline.Answer): its gate outcome, sections, fallback, timing."""
        plan = answer.plan
        titles: dict[str, str] = {}
        for passage in plan.passages:
            titles.setdefault(passage.section_id, passage.chunk.section_title)
        sections = list(answer.citations)
        question = plan.question[:MAX_QUESTION] if self.store_questions else None
        row = (plan.id, _now(), plan.language, plan.gate.label, plan.gate.reason, plan.kind, plan.mode,
               json.dumps(sections, ensure_ascii=False), answer.fallback, int(bool(answer.verified)),
               answer.timings.get("total_ms"), question)  # fmt: skip

        def write(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM answer_sections WHERE answer_id = ?", (plan.id,))
            conn.execute("INSERT OR REPLACE INTO answers VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", row)
            conn.executemany(
                "INSERT INTO answer_sections (answer_id, rank, section_id, title) VALUES (?,?,?,?)",
                [(plan.id, rank, sid, titles.get(sid, "")) for rank, sid in enumerate(sections)],
            )

        self._run(write, write=True)

    def record_feedback(self, answer_id: str, rating: str, comment: str = "") -> None:
        """A thumbs up ("up") or down ("down") on an answer, with an optional comment (the latest wins)."""
        if not isinstance(answer_id, str) or not _ANSWER_ID.fullmatch(answer_id):
            raise InvalidFeedback("Valoración no válida: falta el identificador de la respuesta.")
        if rating not in ("up", "down"):
            raise InvalidFeedback("Valoración no válida: use «up» o «down».")
        comment = _CONTROL.sub("", comment if isinstance(comment, str) else "").strip()[:MAX_COMMENT]

        def write(conn: sqlite3.Connection) -> None:
            # A new comment replaces the old; a changed rating without one clears it.
            conn.execute(
                """INSERT INTO feedback (answer_id, created, rating, comment) VALUES (?,?,?,?)
                   ON CONFLICT(answer_id) DO UPDATE SET created = excluded.created, rating = excluded.rating,
                   comment = CASE WHEN excluded.comment != '' THEN excluded.comment
                                  WHEN excluded.rating != feedback.rating THEN '' ELSE feedback.comment END""",
                (answer_id, _now(), rating, comment),
            )

        self._run(write, write=True)

    def purge(self) -> dict[str, int]:
        """Erase everything stored (and the free pages that held it); how many rows each table had."""

        def erase(conn: sqlite3.Connection) -> dict[str, int]:
            counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("answers", "feedback")}
            for table in ("answer_sections", "answers", "feedback"):
                conn.execute(f"DELETE FROM {table}")
            return counts

        counts = self._run(erase, write=True)
        self._run(lambda conn: (conn.execute("VACUUM"), conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")))
        return counts

    # Reading.

    def analytics(self, since: date | str | None = None, until: date | str | None = None) -> Analytics:
        """The panel's figures for answers (and feedback) dated from `since` to `until`, both included."""
        start, end = parse_day(since), parse_day(until)
        where, params = _range("a.created", start, end)
        fwhere, fparams = _range("f.created", start, end)

        def query(conn: sqlite3.Connection) -> Analytics:
            answers, course, extractive = conn.execute(
                f"""SELECT count(*), coalesce(sum(kind = 'answer'), 0),
                           coalesce(sum(kind = 'answer' AND fallback = 'extractive'), 0)
                    FROM answers a WHERE {where}""",
                params,
            ).fetchone()
            per_section = conn.execute(
                f"""SELECT s.section_id, max(s.title), count(*) AS n FROM answer_sections s
                    JOIN answers a ON a.id = s.answer_id
                    WHERE s.rank = 0 AND a.kind IN ('answer', 'hint') AND {where}
                    GROUP BY s.section_id ORDER BY n DESC, s.section_id""",
                params,
            ).fetchall()
            gate = conn.execute(
                f"""SELECT gate_label, gate_reason, count(*) AS n FROM answers a WHERE {where}
                    GROUP BY gate_label, gate_reason ORDER BY gate_label, n DESC, gate_reason""",
                params,
            ).fetchall()
            up = conn.execute(f"SELECT count(*) FROM feedback f WHERE f.rating = 'up' AND {fwhere}", fparams)
            down = conn.execute(
                f"""SELECT f.created, f.answer_id, f.comment, a.question, a.sections FROM feedback f
                    LEFT JOIN answers a ON a.id = f.answer_id
                    WHERE f.rating = 'down' AND {fwhere} ORDER BY f.created DESC LIMIT 500""",
                fparams,
            ).fetchall()
            thumbs_down = [
                {"created": c, "answer_id": i, "comment": m, "question": q, "sections": _sections(s)}
                for c, i, m, q, s in down
            ]
            return Analytics(start, end, answers, [tuple(r) for r in per_section], [tuple(r) for r in gate],
                             up.fetchone()[0], thumbs_down, course, extractive)  # fmt: skip

        return self._run(query)

    def rows(self, since: date | str | None = None, until: date | str | None = None) -> list[dict[str, Any]]:
        """Everything stored, one row per answer with its feedback (and feedback whose answer is unknown)."""
        start, end = parse_day(since), parse_day(until)
        where, params = _range("a.created", start, end)
        fwhere, fparams = _range("f.created", start, end)

        def query(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            cursor = conn.execute(
                f"""SELECT a.id, a.created, a.language, a.gate_label, a.gate_reason, a.kind, a.mode, a.sections,
                           a.fallback, a.verified, a.total_ms, a.question, f.rating, f.comment, f.created
                    FROM answers a LEFT JOIN feedback f ON f.answer_id = a.id WHERE {where}
                    UNION ALL
                    SELECT f.answer_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                           f.rating, f.comment, f.created
                    FROM feedback f WHERE f.answer_id NOT IN (SELECT id FROM answers) AND {fwhere}
                    ORDER BY 2, 15""",
                params + fparams,
            )
            return [dict(zip(_EXPORT_COLUMNS, row)) for row in cursor]

        rows = self._run(query)
        for row in rows:
            row["sections"] = _sections(row["sections"]) if row["sections"] is not None else None
        return rows

    def export(self) -> dict[str, Any]:
        """Everything stored, as one JSON-ready document."""
        return {
            "format": "tutor-store",
            "schema_version": VERSION,
            "exported": _now(),
            "store_questions": self.store_questions,
            "rows": self.rows(),
        }

    def export_csv(self, since: date | str | None = None, until: date | str | None = None) -> str:
        """The rows as CSV text (UTF-8, a header line; cells a spreadsheet would run as formulas are quoted)."""
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(_EXPORT_COLUMNS)
        for row in self.rows(since, until):
            row["sections"] = " ".join(row["sections"] or [])
            writer.writerow([_cell(row[c]) for c in _EXPORT_COLUMNS])
        return out.getvalue()

    def schema_version(self) -> int:
        """The file's PRAGMA user_version: how many migrations it has."""
        return int(self._run(lambda conn: conn.execute("PRAGMA user_version").fetchone()[0]))

    def journal_mode(self) -> str:
        """'wal' for a store opened by this class."""
        return str(self._run(lambda conn: conn.execute("PRAGMA journal_mode").fetchone()[0]))

    # Plumbing.

    def _setup(self) -> None:
        def migrate(conn: sqlite3.Connection) -> None:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode = WAL")  # persistent: set once in the file
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > VERSION:
                raise StoreError(
                    f"El almacén local «{self.path}» es de una versión más nueva del tutor (esquema {version}); "
                    "actualice el tutor o use otra carpeta de datos (TUTOR_DATA_DIR)."
                )
            for number in range(version + 1, VERSION + 1):
                conn.execute("BEGIN IMMEDIATE")
                try:
                    # Another process may have migrated while this one waited for the lock.
                    if conn.execute("PRAGMA user_version").fetchone()[0] >= number:
                        conn.execute("COMMIT")
                        continue
                    for statement in MIGRATIONS[number - 1]:
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {number}")
                    conn.execute("COMMIT")
                except BaseException:
                    _rollback(conn)
                    raise
                log.info("store %s migrated to schema %d", self.path, number)

        self._run(migrate)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE takes the write lock at once,
        # so a busy file is detected before any work, and retried as a whole).
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
        try:
            conn.execute("PRAGMA foreign_keys = ON")
            if self.max_bytes is not None:
                page = conn.execute("PRAGMA page_size").fetchone()[0]
                conn.execute(f"PRAGMA max_page_count = {max(8, self.max_bytes // page)}")
            yield conn
        finally:
            conn.close()

    def _run(self, work: Callable[[sqlite3.Connection], T], *, write: bool = False) -> T:
        """Run `work` in its own connection (and write transaction); retry while the file is locked."""
        last: Exception | None = None
        for attempt in range(self.attempts):
            try:
                with self._connect() as conn:
                    if not write:
                        return work(conn)
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        result = work(conn)
                        conn.execute("COMMIT")
                    except BaseException:
                        _rollback(conn)
                        raise
                    return result
            except sqlite3.OperationalError as exc:
                message = str(exc).lower()
                if "locked" in message or "busy" in message:
                    last = exc
                    log.info("store busy (attempt %d of %d): %s", attempt + 1, self.attempts, exc)
                    time.sleep(0.05 * 2**attempt)
                    continue
                if "full" in message:
                    raise StoreError(
                        f"El almacén local «{self.path}» está lleno (disco lleno o límite TUTOR_STORE_MAX_MB): "
                        "libere espacio, o exporte y vacíe lo guardado con «tutor data export --out copia.json» "
                        "y «tutor data purge --yes»."
                    ) from exc
                raise StoreError(f"El almacén local «{self.path}» no responde ({exc}).") from exc
            except sqlite3.DatabaseError as exc:
                raise StoreError(
                    f"El almacén local «{self.path}» está dañado ({exc}): apártelo o bórrelo y se creará uno nuevo "
                    "(solo contiene valoraciones y estadísticas, no el curso)."
                ) from exc
            except OSError as exc:
                raise StoreError(f"No se puede abrir el almacén local «{self.path}» ({exc}).") from exc
        raise StoreError(
            f"El almacén local «{self.path}» está bloqueado por otro proceso: no se guardó. "
            "Vuelva a intentarlo en unos segundos."
        ) from last


class InvalidFeedback(TutorError):
    """A rating that is not "up" or "down", or without the id of its answer."""


def parse_day(value: date | str | None) -> date | None:
    """A date from a date or 'YYYY-MM-DD' ('' and None mean no bound); TutorError when unreadable."""
    if value is None or isinstance(value, date):
        return value.date() if isinstance(value, datetime) else value
    text = str(value).strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        raise TutorError(f"Fecha no válida «{text}»: escríbala como AAAA-MM-DD (por ejemplo 2025-03-31).") from None


def _range(column: str, start: date | None, end: date | None) -> tuple[str, list[str]]:
    clauses, params = ["1"], []
    if start is not None:
        clauses.append(f"{column} >= ?")
        params.append(start.isoformat())
    if end is not None:  # inclusive: everything before the next day
        clauses.append(f"{column} < ?")
        params.append((end + timedelta(days=1)).isoformat())
    return " AND ".join(clauses), params


def _now() -> str:
    return datetime.now().isoformat(sep=" ", timespec="seconds")


def _sections(text: str | None) -> list[str]:
    try:
        value = json.loads(text or "[]")
    except ValueError:
        return []
    return [str(v) for v in value] if isinstance(value, list) else []


def _cell(value: Any) -> Any:
    # A student's question starting with "=" must not become a formula in the instructor's spreadsheet.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _rollback(conn: sqlite3.Connection) -> None:
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    except sqlite3.Error:
        pass
