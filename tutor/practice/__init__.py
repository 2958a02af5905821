"""Practice mode: ask a question from the bank, grade the reply, give feedback, ask the next one.

Stateless like the rest of the pipeline: the question waiting for an answer and every result live in
the `meta["quiz"]` of the tutor's turns, which the interface sends back with the history. Sections
answered wrong or halfway come back two questions later (spaced review within the session); the
mastery table (`mastery()`, `mastery_markdown()`) summarises the results per section and can be
merged with one the browser kept from earlier sessions. Texts the student reads are templates in
prompts/replies/<language>/quiz_*.md. It does not build the bank (bank.py) nor score answers (grade.py).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tutor.config import PROJECT_DIR
from tutor.practice.bank import Bank, Item, build_bank
from tutor.practice.grade import Grade, Grader, option_label
from tutor.prompts import PromptLibrary

if TYPE_CHECKING:
    from tutor.index import Index

REVIEW_AFTER = 2  # a section answered wrong comes back after this many other questions
PER_SECTION = 2  # questions on one section before moving on to the next
_TYPE_ORDER = ("definition", "mc", "cloze", "compare", "tf", "open")
_SECTION = re.compile(r"(?:§|\b(?:secci[oó]n|section|apartado|tema|cap[ií]tulo|chapter)\s*)?\b(\d+(?:\.\d+){0,3})\b",
                      re.IGNORECASE)  # fmt: skip
# Messages that only ask for (another) question: no topic to search for.
_COMMAND = re.compile(
    r"^\s*(otra|otra pregunta|siguiente|next|another|more|m[aá]s|s[ií]|ok|vale|venga|dale|empezar|empieza|"
    r"start|go|yes|pregunta|preg[uú]ntame|preg[uú]ntame algo|quiz me|ask me|test me|practicar|practiquemos|"
    r"una pregunta|dame una pregunta|hazme una pregunta|seguimos|continuar|continue|hola|hi|hello)\W*$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Step:
    """What the practice step decided: the reply, its kind, and the quiz record for the turn's meta."""

    kind: str  # quiz (a question) | feedback (a grade, then the next question)
    text: str
    quiz: dict[str, Any]
    section: str


class Practice:
    """The bank, the grader and the prompts: read-only after start, shared by every conversation."""

    def __init__(self, bank: Bank, grader: Grader, prompts: PromptLibrary) -> None:
        self.bank, self.grader, self.prompts = bank, grader, prompts

    @classmethod
    def load(cls, index: Index, data_dir: Path, knowledge_dir: Path, prompts: PromptLibrary) -> Practice:
        return cls(build_bank(index, data_dir, knowledge_dir), Grader(index), prompts)

    def step(self, message: str, history: Sequence[Mapping[str, Any]], language: str, *,
             search: Callable[[str], str | None] | None = None,
             previous: Mapping[str, Any] | None = None) -> Step:  # fmt: skip
        """Grade the answer to the pending question (if any), then ask the next question.

        Args:
            search: the section a message is about (retrieval), for "pregúntame sobre RoBERTa".
            previous: a mastery dict kept from earlier sessions, to start with the weakest section.
        """
        metas = [t.get("meta") or {} for t in history if t.get("role") == "assistant"]
        waiting = pending(metas)
        parts: list[str] = []
        result: dict[str, Any] | None = None
        target: str | None = None
        if waiting is not None:
            answered = self.bank.by_id(str(waiting.get("id"))) or _item_from_meta(waiting)
            grade = self.grader.grade(answered, message)
            result = {"item": answered.id, "section": answered.section, "type": answered.type,
                      "verdict": grade.verdict, "missing": list(grade.missing), "score": round(grade.score, 3),
                      "at": _now()}  # fmt: skip
            parts.append(self.feedback(answered, grade, language))
        else:
            target = self._target(message, search)
            if target is not None and not self.bank.of_section(target, with_children=True):
                parts.append(self.prompts.reply("quiz_no_items", language, section=target))
                target = None
        results = [r for r in (results_of(metas) + ([result] if result else []))]
        item, review = self.next_item(metas, results, target=target, previous=previous)
        number = len(results) + 1
        if item is None:
            parts.append(self.prompts.reply("quiz_no_items", language, section=target or "—"))
            return Step("feedback" if result else "quiz", "\n\n".join(parts), {"result": result}, "")
        if review:
            parts.append(self.prompts.reply("quiz_review", language, section=item.section, title=item.title))
        parts.append(self.ask(item, language, number))
        quiz = {"pending": _item_meta(item), "result": result, "review": review, "number": number}
        return Step("feedback" if result else "quiz", "\n\n".join(parts), quiz, item.section)

    def ask(self, item: Item, language: str, number: int) -> str:
        """The question as the student sees it, in their language (the course's words stay Spanish)."""
        values = {"section": item.section, "number": number}
        if item.type == "definition":
            return self.prompts.reply("quiz_definition", language, term=item.subject, **values)
        if item.type == "cloze":
            return self.prompts.reply("quiz_cloze", language, sentence=item.subject, **values)
        if item.type == "mc":
            options = "\n".join(f"- **{option_label(n)})** {o}" for n, o in enumerate(item.options))
            return self.prompts.reply("quiz_mc", language, statement=item.subject, options=options, **values)
        if item.type == "tf":
            return self.prompts.reply("quiz_tf", language, statement=item.subject, **values)
        if item.type == "compare":
            a, _, b = item.subject.partition(" | ")
            return self.prompts.reply("quiz_compare", language, a=a, b=b, **values)
        return self.prompts.reply("quiz_open", language, question=item.question, **values)

    def next_item(
        self,
        metas: Sequence[Mapping[str, Any]],
        results: Sequence[Mapping[str, Any]],
        *,
        target: str | None = None,
        previous: Mapping[str, Any] | None = None,
    ) -> tuple[Item | None, bool]:
        """The next question and whether it is a review: named section, due review, current topic, weakest."""
        asked = asked_ids(metas)
        if target is not None:
            return self._pick(self.bank.of_section(target, with_children=True), asked), False
        due = _due(results)
        if due is not None:
            return self._pick(self.bank.of_section(due), asked, allow_repeat=True), True
        current = _current_section(metas, results)
        if current is not None:
            on_current = sum(1 for r in results[-PER_SECTION:] if r.get("section") == current)
            choice = self._pick(self.bank.of_section(current), asked) if on_current < PER_SECTION else None
            if choice is not None:
                return choice, False
            return self._after(current, asked), False
        weakest = _weakest(previous or {}, self.bank)
        if weakest is not None:
            return self._pick(self.bank.of_section(weakest), asked, allow_repeat=True), False
        return self._after(None, asked), False

    def _pick(self, items: Sequence[Item], asked: Mapping[str, int], *, allow_repeat: bool = False) -> Item | None:
        fresh = [i for i in items if i.id not in asked]
        if not fresh and allow_repeat:
            fresh = sorted(items, key=lambda i: asked.get(i.id, 0))[:1] or []
        if not fresh:
            return None
        used_types = [t for i in items if i.id in asked for t in [i.type]]
        return min(fresh, key=lambda i: (used_types.count(i.type), _TYPE_ORDER.index(i.type)))

    def _after(self, section: str | None, asked: Mapping[str, int]) -> Item | None:
        """The first question of the next section in course order (wrapping round) that has one left."""
        order = self.bank.order
        start = order.index(section) + 1 if section in order else 0
        for sid in order[start:] + order[:start]:
            choice = self._pick(self.bank.of_section(sid), asked)
            if choice is not None:
                return choice
        return None

    def _target(self, message: str, search: Callable[[str], str | None] | None) -> str | None:
        match = _SECTION.search(message)
        if match and ("." in match.group(1) or match.group(0) != match.group(1)):
            return match.group(1)  # "3.3", "§3", "sección 4": a bare "3" could be anything
        if search is not None and not _COMMAND.match(message) and len(message.split()) >= 1:
            return search(message)
        return None

    def feedback(self, item: Item, grade: Grade, language: str) -> str:
        """Verdict, what was missing, and the section to reread with its excerpt."""
        missing = ""
        if grade.missing and grade.verdict != "correct":
            missing = self.prompts.reply("quiz_missing", language, terms=", ".join(f"«{m}»" for m in grade.missing))
        excerpt = "\n> ".join(item.reference.splitlines())
        answer = grade.expected or item.reference
        return self.prompts.reply(f"quiz_{grade.verdict}", language, section=item.section, title=item.title,
                                  missing=missing, excerpt=excerpt, answer=answer)  # fmt: skip


def pending(metas: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The question the tutor last asked, if still waiting: a refusal or a greeting in between keeps it."""
    for meta in reversed(metas):
        if not isinstance(meta, Mapping):
            return None
        quiz = meta.get("quiz")
        if isinstance(quiz, Mapping):
            waiting = quiz.get("pending")
            return dict(waiting) if isinstance(waiting, Mapping) and waiting.get("id") else None
        if meta.get("kind") not in ("refusal", "chitchat", "redirect"):
            return None
    return None


def results_of(metas: Iterable[Any]) -> list[dict[str, Any]]:
    """Every graded answer in a conversation, oldest first (metas or whole turns with a 'meta')."""
    out = []
    for meta in metas:
        if isinstance(meta, Mapping) and "role" in meta:
            meta = meta.get("meta") or {}
        quiz = meta.get("quiz") if isinstance(meta, Mapping) else None
        result = quiz.get("result") if isinstance(quiz, Mapping) else None
        if isinstance(result, Mapping) and result.get("section") and result.get("verdict"):
            out.append(dict(result))
    return out


def asked_ids(metas: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Item id -> the question number it was last asked at."""
    asked: dict[str, int] = {}
    for n, meta in enumerate(metas):
        quiz = meta.get("quiz") if isinstance(meta, Mapping) else None
        waiting = quiz.get("pending") if isinstance(quiz, Mapping) else None
        if isinstance(waiting, Mapping) and waiting.get("id"):
            asked[str(waiting["id"])] = n
    return asked


def _due(results: Sequence[Mapping[str, Any]]) -> str | None:
    """The oldest section answered wrong or halfway, not answered right since, at least REVIEW_AFTER back."""
    for n, result in enumerate(results):
        section = result.get("section")
        later = results[n + 1 :]
        if result.get("verdict") == "correct" or any(r.get("section") == section for r in later):
            continue
        if len(later) >= REVIEW_AFTER:
            return str(section)
    return None


def _current_section(metas: Sequence[Mapping[str, Any]], results: Sequence[Mapping[str, Any]]) -> str | None:
    """The section being practised, or the one the conversation last cited (explain / socratic turns)."""
    if results:
        return str(results[-1]["section"])
    for meta in reversed(metas):
        citations = meta.get("citations") if isinstance(meta, Mapping) else None
        if isinstance(citations, list) and citations:
            return str(citations[0])
    return None


def _weakest(previous: Mapping[str, Any], bank: Bank) -> str | None:
    rows = [(v.get("correct_rate", 1.0), k) for k, v in previous.items()
            if isinstance(v, Mapping) and v.get("tried") and k in bank.titles]  # fmt: skip
    rows = [r for r in rows if r[0] < 0.6 and bank.of_section(r[1])]
    return min(rows)[1] if rows else None


def _item_meta(item: Item) -> dict[str, Any]:
    """What the turn keeps of its question: enough to grade it even if the bank changes meanwhile."""
    return {k: v for k, v in item.to_dict().items() if k != "source"}


def _item_from_meta(meta: Mapping[str, Any]) -> Item:
    try:
        return Item.from_dict(dict(meta))
    except TypeError:
        return Item(str(meta.get("id")), str(meta.get("section", "")), "", "open", "", str(meta.get("reference", "")))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# --- mastery ---------------------------------------------------------------------------------------


def mastery(metas: Iterable[Any], previous: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Per section: {tried, correct, partial, correct_rate, last_seen}, from a conversation's tutor metas.

    Args:
        metas: the `meta` dicts of the tutor's turns (or whole turns {role, content, meta}), oldest first.
        previous: a mastery dict from earlier sessions (what the browser kept); its counts are added.
    """
    table: dict[str, dict[str, Any]] = {}
    for section, row in (previous or {}).items():
        if isinstance(row, Mapping):
            table[str(section)] = {
                "tried": _int(row.get("tried")),
                "correct": _int(row.get("correct")),
                "partial": _int(row.get("partial")),
                "last_seen": str(row.get("last_seen") or ""),
            }
    for result in results_of(metas):
        row = table.setdefault(str(result["section"]), {"tried": 0, "correct": 0, "partial": 0, "last_seen": ""})
        row["tried"] += 1
        row["correct"] += result["verdict"] == "correct"
        row["partial"] += result["verdict"] == "partial"
        row["last_seen"] = max(row["last_seen"], str(result.get("at") or ""))
    for row in table.values():
        row["correct"] = min(row["correct"], row["tried"])
        row["correct_rate"] = round(row["correct"] / row["tried"], 2) if row["tried"] else 0.0
    return dict(sorted(table.items(), key=lambda kv: _section_key(kv[0])))


def mastery_markdown(table: Mapping[str, Mapping[str, Any]], language: str, *, prompts: PromptLibrary | None = None,
                     titles: Mapping[str, str] | None = None) -> str:  # fmt: skip
    """The mastery table as Markdown in the student's language ('' when nothing was practised)."""
    if not table:
        return ""
    prompts = prompts or PromptLibrary(PROJECT_DIR / "prompts")
    lines = [prompts.reply("quiz_mastery", language)]
    for section, row in table.items():
        title = f" {titles[section]}" if titles and section in titles else ""
        rate = f"{round(100 * float(row.get('correct_rate', 0)))} %"
        filled = round(5 * float(row.get("correct_rate", 0)))
        bar = "█" * filled + "░" * (5 - filled)
        seen = str(row.get("last_seen") or "")[:16].replace("T", " ")
        lines.append(f"| §{section}{title} | {row.get('tried', 0)} | {row.get('correct', 0)} | {bar} {rate} | {seen} |")
    return "\n".join(lines)


def _int(value: Any) -> int:
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0


def _section_key(section: str) -> tuple[Any, ...]:
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in section.split("."))


class LazyPractice:
    """Builds the practice engine on first use (the bank takes 1-2 s), once, under a lock."""

    def __init__(self, factory: Callable[[], Practice]) -> None:
        self._factory, self._lock = factory, threading.Lock()
        self._engine: Practice | None = None

    def get(self) -> Practice:
        with self._lock:
            if self._engine is None:
                self._engine = self._factory()
            return self._engine
