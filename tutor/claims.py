"""Claims evaluation: how well a verifier tells the course's claims from inventions, on labelled sentences.

Input: a JSONL file of generated sentences (eval/claims.jsonl), each with the answer it came from, the
passages it was checked against, a label (supported | unsupported | not_a_claim) and what the verifier
decided when it was recorded. Output: per part (tune / heldout) and per model, the verifier's precision
(of the sentences it lets through, the share labelled supported) and recall (of the supported ones, the
share it lets through). A sentence is *let through* when a student would see it as verified: the
verifier kept it and accepted its whole answer. not_a_claim sentences count in neither figure; they are
reported apart. It does not generate (no model is needed) and does not label anything.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tutor.evaluate import read_jsonl
from tutor.types import Chunk, Passage

LABELS = ("supported", "unsupported", "not_a_claim")
SPLITS = ("tune", "heldout")
SOURCES = ("generated", "issue")  # generated in the recorded run | recorded from issue 18's text


@dataclass(frozen=True)
class ClaimPassage:
    chunk_id: str
    section_id: str
    title: str
    text: str


@dataclass(frozen=True)
class Recorded:
    """What the verifier decided when the item was recorded."""

    kept: bool
    reason: str | None  # why the sentence was removed; None when kept
    answer_verified: bool  # the whole answer was shown as verified
    answer_rejected: str | None  # why the whole answer was refused (empty, language, unnamed, too_little, …)


@dataclass(frozen=True)
class Claim:
    id: str
    answer_id: str  # groups the sentences of one generated answer
    question_id: str
    model: str
    source: str
    split: str
    language: str  # the reply language the verifier was given
    kind: str
    question: str
    answer: str  # the full generated text, as the verifier received it
    position: int  # the sentence's place among the answer's sentences, from 0
    sentence: str
    passages: tuple[ClaimPassage, ...]
    label: str
    note: str
    recorded: Recorded
    history: tuple[dict[str, str], ...] = ()
    prompt: str = ""  # the prompt's text (the verifier's echo check reads it)

    @property
    def let_through(self) -> bool:
        """Shown to the student as verified, by the recorded verifier."""
        return self.recorded.kept and self.recorded.answer_verified


@dataclass
class ClaimSet:
    items: list[Claim] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # "línea 7: …"


# One answer's sentences (in order) -> whether each is let through.
Decide = Callable[[Sequence[Claim]], Sequence[bool]]


def load_claims(path: Path) -> ClaimSet:
    """Every valid item of a claims file; each malformed or inconsistent line is reported with its number."""
    out = ClaimSet()
    answers: dict[str, tuple[int, Claim]] = {}  # answer id -> first line and item
    parts: dict[str, str] = {}  # question id -> its part
    seen: set[str] = set()
    for number, raw in read_jsonl(path, out.errors, noun="el archivo de afirmaciones"):
        try:
            claim = _parse(_inherit(raw, answers))
            _consistent(claim, answers.get(claim.answer_id), parts, seen)
        except ValueError as exc:
            out.errors.append(f"línea {number}: {exc}")
            continue
        seen.add(claim.id)
        answers.setdefault(claim.answer_id, (number, claim))
        parts.setdefault(claim.question_id, claim.split)
        out.items.append(claim)
    return out


# Given once per answer, on its first line; the answer's later lines may leave them out (the file would
# otherwise repeat ~5 passages and the prompt on every sentence).
_PER_ANSWER = ("passages", "prompt")


def _inherit(raw: Any, answers: dict[str, tuple[int, Claim]]) -> Any:
    """The line with what it leaves out of _PER_ANSWER taken from its answer's first line."""
    answer_id = raw.get("answer_id") if isinstance(raw, dict) else None
    if not isinstance(answer_id, str) or (first := answers.get(answer_id)) is None:
        return raw
    claim = first[1]
    inherited = {"passages": [vars(p) for p in claim.passages], "prompt": claim.prompt}
    return {**{k: inherited[k] for k in _PER_ANSWER if k not in raw}, **raw}


def _consistent(claim: Claim, first: tuple[int, Claim] | None, parts: dict[str, str], seen: set[str]) -> None:
    """An item agrees with the others of its answer, and a question lives in one part only."""
    if claim.id in seen:
        raise ValueError(f"id repetido «{claim.id}»")
    if parts.get(claim.question_id, claim.split) != claim.split:
        raise ValueError(f"la pregunta «{claim.question_id}» ya está en la parte «{parts[claim.question_id]}»")
    if first is None:
        return
    number, other = first
    for key in ("question_id", "model", "source", "split", "language", "question", "answer", "passages", "prompt"):
        if getattr(claim, key) != getattr(other, key):
            raise ValueError(f"«{key}» distinto del de la línea {number} (misma respuesta «{claim.answer_id}»)")
    if (claim.recorded.answer_verified, claim.recorded.answer_rejected) != (
        other.recorded.answer_verified,
        other.recorded.answer_rejected,
    ):
        raise ValueError(f"la decisión sobre la respuesta difiere de la de la línea {number}")


def _parse(raw: Any) -> Claim:
    if not isinstance(raw, dict):
        raise ValueError("cada línea debe ser un objeto JSON")

    def text(key: str, where: dict[str, Any] = raw, *, empty: bool = False) -> str:
        value = where.get(key)
        if not isinstance(value, str) or not (empty or value.strip()):
            raise ValueError(f"falta «{key}» o no es un texto")
        return value

    label, split, source = text("label"), text("split"), text("source")
    for name, value, allowed in (("label", label, LABELS), ("split", split, SPLITS), ("source", source, SOURCES)):
        if value not in allowed:
            raise ValueError(f"{name} «{value}» no es uno de {list(allowed)}")
    note = raw.get("note") or ""
    if not isinstance(note, str) or (label == "unsupported" and not note.strip()):
        raise ValueError("una afirmación «unsupported» necesita una nota («note») que diga qué falla")
    passages = raw.get("passages")
    if not isinstance(passages, list) or not passages or not all(isinstance(p, dict) for p in passages):
        raise ValueError("«passages» debe ser una lista no vacía de {chunk_id, section_id, title, text}")
    position = raw.get("position")
    if not isinstance(position, int) or isinstance(position, bool) or position < 0:
        raise ValueError("«position» debe ser un entero ≥ 0")
    sentence, answer = text("sentence"), text("answer")
    if " ".join(sentence.split()) not in " ".join(answer.split()):
        raise ValueError("«sentence» no está en «answer»")
    history = raw.get("history", [])
    if not isinstance(history, list) or not all(
        isinstance(t, dict) and t.get("role") in {"user", "assistant"} and isinstance(t.get("content"), str)
        for t in history
    ):
        raise ValueError("«history» debe ser una lista de {role: user|assistant, content: texto}")
    prompt = raw.get("prompt", "")
    if not isinstance(prompt, str):
        raise ValueError("«prompt» debe ser un texto")
    return Claim(
        id=text("id"), answer_id=text("answer_id"), question_id=text("question_id"), model=text("model"),
        source=source, split=split, language=text("language"), kind=text("kind"), question=text("question"),
        answer=answer, position=position, sentence=sentence,
        passages=tuple(ClaimPassage(*(text(k, p) for k in ("chunk_id", "section_id", "title", "text")))
                       for p in passages),
        label=label, note=note, recorded=_recorded(raw.get("verifier")), history=tuple(history), prompt=prompt,
    )  # fmt: skip


def _recorded(raw: Any) -> Recorded:
    if not isinstance(raw, dict):
        raise ValueError("falta «verifier»: {kept, reason, answer_verified, answer_rejected}")
    kept, verified = raw.get("kept"), raw.get("answer_verified")
    reason, rejected = raw.get("reason"), raw.get("answer_rejected")
    if not isinstance(kept, bool) or not isinstance(verified, bool):
        raise ValueError("«verifier.kept» y «verifier.answer_verified» deben ser true o false")
    if not all(v is None or isinstance(v, str) for v in (reason, rejected)):
        raise ValueError("«verifier.reason» y «verifier.answer_rejected» deben ser texto o null")
    return Recorded(kept, reason, verified, rejected)


def answers(items: Iterable[Claim]) -> list[list[Claim]]:
    """The items grouped by answer, each group in sentence order; groups in file order."""
    groups: dict[str, list[Claim]] = defaultdict(list)
    for claim in items:
        groups[claim.answer_id].append(claim)
    return [sorted(group, key=lambda c: c.position) for group in groups.values()]


def recorded_decisions(group: Sequence[Claim]) -> list[bool]:
    """What the verifier decided when the items were recorded (no index, no model)."""
    return [claim.let_through for claim in group]


def decisions(items: Sequence[Claim], decide: Decide) -> dict[str, bool]:
    """Claim id -> let through, asking `decide` once per answer."""
    out: dict[str, bool] = {}
    for group in answers(items):
        verdicts = list(decide(group))
        if len(verdicts) != len(group):
            raise ValueError(f"el verificador dio {len(verdicts)} decisiones para {len(group)} frases")
        out.update({claim.id: bool(v) for claim, v in zip(group, verdicts)})
    return out


def claim_scores(items: Sequence[Claim], through: dict[str, bool]) -> dict[str, Any]:
    """Figures per part and per model from `through` (claim id -> let through)."""
    result: dict[str, Any] = {}
    for split in SPLITS:
        part = [c for c in items if c.split == split]
        models = sorted({c.model for c in part})
        result[split] = {
            **_figures(part, through),
            "by_model": {m: _figures([c for c in part if c.model == m], through) for m in models},
            "by_source": {s: _figures([c for c in part if c.source == s], through)
                          for s in SOURCES if any(c.source == s for c in part)},
            "unsupported_let_through": [c.id for c in part if c.label == "unsupported" and through[c.id]],
        }  # fmt: skip
    return result


def _figures(part: Sequence[Claim], through: dict[str, bool]) -> dict[str, Any]:
    labels = Counter(c.label for c in part)
    passed = Counter(c.label for c in part if through[c.id])
    shown = passed["supported"] + passed["unsupported"]
    return {
        "n": len(part),
        "precision": round(passed["supported"] / shown, 4) if shown else None,
        "recall": round(passed["supported"] / labels["supported"], 4) if labels["supported"] else None,
        "labels": {label: labels[label] for label in LABELS},
        "let_through": {label: passed[label] for label in LABELS},  # not_a_claim: reported, never scored
    }


def claims_report(items: Sequence[Claim], decide: Decide, *, verifier: str) -> dict[str, Any]:
    """What `tutor eval --claims` reports: the figures of `decide`, how often it agrees with the recorded
    decisions, and the recorded decisions' own figures (computed without index or model)."""
    through = decisions(items, decide)
    recorded = decisions(items, recorded_decisions)
    return {
        "n": len(items),
        "verifier": verifier,
        **claim_scores(items, through),
        "agreement_with_recorded": agreement(items, through),
        "recorded": claim_scores(items, recorded),
    }


def agreement(items: Sequence[Claim], through: dict[str, bool]) -> float | None:
    """Share of items on which `through` matches the recorded decision (1.0: the same verifier, same index)."""
    return round(sum(through[c.id] == c.let_through for c in items) / len(items), 4) if items else None


def load_entropies(path: Path) -> dict[str, float]:
    """Claim id -> the mean entropy of its tokens (tools/claims_token_stats.py's output); {} when the file
    is absent. A line without both keys is skipped."""
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
            out[str(row["id"])] = float(row["entropy_mean"])
        except (ValueError, KeyError, TypeError):
            continue
    return out


def stored_entropy(
    group: Sequence[Claim], entropies: dict[str, float] | None
) -> Callable[[Sequence[str]], list[float | None]]:
    """The verifier's `entropy` argument for a stored answer: each sentence's recorded mean, by its text."""
    by_sentence = {c.sentence: entropies[c.id] for c in group if entropies and c.id in entropies}
    return lambda sentences: [by_sentence.get(s) for s in sentences]


def verifier_decide(
    verifier: Any, index: Any, entropies: dict[str, float] | None = None
) -> tuple[Decide, Callable[[], int]]:
    """Re-run a Verifier (tutor.verify) on each stored answer, with the writer's recorded token entropies
    when given (load_entropies); also a counter of passages missing from the index (a changed course: the
    verifier then sees the stored text with no indexed sentences)."""
    stale: set[str] = set()

    def decide(group: Sequence[Claim]) -> list[bool]:
        first = group[0]
        verdict = verifier.check(first.answer, question=first.question, passages=stored_passages(first, index, stale),
                                 language=first.language, prompt=first.prompt,
                                 entropy=stored_entropy(group, entropies), writer=first.model)  # fmt: skip
        kept = Counter(verdict.kept) if verdict.verified else Counter()
        out = []
        for claim in group:
            out.append(kept[claim.sentence] > 0)
            kept[claim.sentence] -= 1
        return out

    return decide, lambda: len(stale)


def stored_passages(claim: Claim, index: Any, stale: set[str]) -> list[Passage]:
    """The passages a claim was checked against, as the index holds them (or as stored, noted in `stale`)."""
    out = []
    for p in claim.passages:
        chunk = index.chunks.get(p.chunk_id)
        if chunk is None or chunk.text != p.text:
            stale.add(p.chunk_id)
            chunk = Chunk(p.chunk_id, "", p.section_id, p.title, 0, p.text, "")
        out.append(Passage(chunk, 0.0, None, None))
    return out


def labelled_evidence(
    items: Sequence[Claim], verifier: Any, index: Any, entropies: dict[str, float] | None = None
) -> tuple[list[Any], int]:
    """What the verifier measures of each labelled claim (tutor.meaning_fit.Labelled rows: not_a_claim items and
    replies refused as a whole are left out), and how many claims it split differently (also left out)."""
    from tutor.meaning_fit import Labelled

    rows, unmatched, stale = [], 0, set[str]()
    for group in answers(items):
        first = group[0]
        got = verifier.assess(first.answer, question=first.question, passages=stored_passages(first, index, stale),
                              language=first.language, prompt=first.prompt,
                              entropy=stored_entropy(group, entropies))  # fmt: skip
        if not isinstance(got, list):
            continue
        by_sentence = {e.sentence: e for e in got}
        for claim in group:
            evidence = by_sentence.get(claim.sentence)
            if evidence is None:
                unmatched += 1
            elif claim.label != "not_a_claim":
                rows.append(
                    Labelled(evidence, claim.label == "supported", claim.question_id, claim.answer_id, claim.model)
                )
    return rows, unmatched


def summary(result: dict[str, Any]) -> str:
    """The text `tutor eval --claims` prints: one line per part and per model."""
    lines = [f"{result['n']} frases ({result.get('malformed', 0)} mal formadas); verificador {result['verifier']}; "
             f"coincide con lo registrado en {result['agreement_with_recorded']}"]  # fmt: skip
    for split in SPLITS[::-1]:
        for name, row in [(split, result[split]), *(("  " + m, r) for m, r in result[split]["by_model"].items())]:
            labels, passed = row["labels"], row["let_through"]
            lines.append(
                f"  {name:<22} n={row['n']:<4} precisión {row['precision']}  recall {row['recall']}  "
                f"(pasan {passed['supported']}/{labels['supported']} apoyadas, {passed['unsupported']}/"
                f"{labels['unsupported']} no apoyadas; {labels['not_a_claim']} no son afirmaciones)"
            )
    return "\n".join(lines)
