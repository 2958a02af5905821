"""Grading a student's answer to a practice item: correct, partial or incorrect, and what was missing.

Free-text answers (definitions, comparisons, instructors' open questions) are scored against the
course's reference sentence with four signals: e5 similarity (multilingual: an English answer to a
Spanish reference still scores), coverage of the item's key terms (stems, accents folded,
Spanish-English cognates: "bidireccional" ~ "bidirectional"), the margin by which the answer is
closer to the reference than to any other sentence of the course (a wrong answer is usually another
concept of the course: CBOW for Skip-Gram), and the answer's length (a vague answer is short). A
three-class logistic model over them was fitted on the tuning part of `eval/grading.jsonl` only
(`tutor quiz eval --tune` prints its weights); the held-apart part measures it. Cloze items need the
blanked word; multiple choice and true/false are graded exactly.
It does not choose questions or write feedback (the session in practice/__init__.py does).
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tutor.config import PROJECT_DIR
from tutor.embed import Embedder
from tutor.practice.bank import Item
from tutor.text import cognate, fold, gives_up

if TYPE_CHECKING:
    from tutor.index import Index

VERDICTS = ("correct", "partial", "incorrect")


@dataclass(frozen=True)
class Weights:
    """A three-class logistic model over (similarity, coverage, margin, log words), standardised."""

    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[tuple[float, ...], ...]  # one row per verdict, in VERDICTS order
    intercept: tuple[float, ...]


# Fitted on the tuning part of eval/grading.jsonl (`tutor quiz eval --tune` prints these numbers).
WEIGHTS = Weights(
    mean=(0.8827, 0.2881, -0.0089, 2.3022),
    scale=(0.0489, 0.3694, 0.0338, 0.5902),
    coef=((0.7099, 0.9877, 0.3723, 1.3061), (-0.6403, -0.1358, 0.2164, -1.9049), (-0.0697, -0.8519, -0.5887, 0.5988)),
    intercept=(0.0829, -0.2516, 0.1687),
)
# The similarity is the embedder's own cosine, so another embedder needs weights of its own: with
# EmbeddingGemma and the e5 weights the held-apart agreement fell to 0.708; refitted (bfloat16 vectors,
# `tutor quiz eval --tune` with TUTOR_EMBEDDER=embeddinggemma-300m): 0.886 tuning, 0.892 held apart (issue 16).
WEIGHTS_BY_EMBEDDER = {
    "embeddinggemma-300m": Weights(
        mean=(0.5968, 0.2929, 0.0051, 2.3022),
        scale=(0.2161, 0.3678, 0.174, 0.5902),
        coef=((1.0659, 0.9865, 0.25, 1.1541), (-0.4572, -0.2155, 0.1228, -1.8733), (-0.6088, -0.771, -0.3728, 0.7192)),
        intercept=(-0.1377, -0.0459, 0.1836),
    ),
}
_TRUE = set("verdadero verdadera cierto cierta v true t yes y si sí correcto correcta verdade verdadeiro vrai "
            "vero wahr richtig cert certa veritat".split())  # fmt: skip
_FALSE = set("falso falsa f false no incorrecto incorrecta mentira faux faso falsch fals nein non".split())


@dataclass(frozen=True)
class Grade:
    verdict: str  # correct | partial | incorrect
    score: float  # 0..1 (1 or 0 for exact items)
    similarity: float = 0.0  # e5 cosine of answer and reference (free text only)
    coverage: float = 0.0  # fraction of key terms the answer mentions
    missing: tuple[str, ...] = ()  # key terms the answer lacks
    expected: str = ""  # what the right answer was, to show (mc option, tf statement, the blank)

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "score": round(self.score, 3), "similarity": round(self.similarity, 3),
                "coverage": round(self.coverage, 3), "missing": list(self.missing)}  # fmt: skip


class Grader:
    """Grades answers against items with the index's stemmer and its sentence vectors."""

    def __init__(self, index: Index, weights: Weights | None = None) -> None:
        self.embedder: Embedder = index.embedder
        self.tokens: Callable[[str], list[str]] = index.tokens
        self.weights = weights or WEIGHTS_BY_EMBEDDER.get(self.embedder.name, WEIGHTS)
        rows = index.sentences_of(list(index.chunks))
        self._texts = [fold(t.lstrip("-•* ")) for _, t, _ in rows]
        dim = getattr(self.embedder, "dim", 1)
        self._vectors = np.stack([v for _, _, v in rows]) if rows else np.zeros((0, dim), dtype=np.float32)

    def grade(self, item: Item, answer: str) -> Grade:
        """The verdict on one answer; never raises on odd input (an empty answer is incorrect)."""
        answer = " ".join((answer or "").split())[:2000]
        if item.type == "mc":
            return self._choice(item, answer)
        if item.type == "tf":
            return self._true_false(item, answer)
        if item.type == "cloze":
            ok = bool(answer) and self.mentions(item.answer, answer)
            return Grade("correct" if ok else "incorrect", float(ok), coverage=float(ok),
                         missing=() if ok else (item.answer,), expected=item.answer)  # fmt: skip
        if gives_up(answer):
            return Grade("incorrect", 0.0, missing=item.key_terms, expected=item.reference)
        features, missing = self.signals(item, answer)
        return self.decide(features, missing, item.reference)

    def signals(self, item: Item, answer: str) -> tuple[tuple[float, float, float, float], tuple[str, ...]]:
        """((similarity, coverage, margin, log words), missing key terms) for a free-text answer."""
        queries = self.embedder.embed_queries([answer, item.reference])
        similarity = float(queries[0] @ queries[1])
        keys = item.key_terms
        missing = tuple(k for k in keys if not self.mentions(k, answer))
        coverage = 1.0 - len(missing) / len(keys) if keys else 0.5
        # How much closer the answer is to its reference than to the rest of the course.
        reference = self.embedder.embed_passages([f"{item.title}: {item.reference}"])[0]
        own = float(reference @ queries[0])
        ref = fold(item.reference)
        others = [n for n, t in enumerate(self._texts) if t not in ref and ref not in t]
        best_other = float((self._vectors[others] @ queries[0]).max()) if others else 0.0
        words = math.log(max(1, len(answer.split())))
        return (similarity, coverage, own - best_other, words), missing

    def decide(self, features: Sequence[float], missing: tuple[str, ...] = (), reference: str = "",
               weights: Weights | None = None) -> Grade:  # fmt: skip
        w = weights or self.weights
        x = (np.asarray(features) - np.asarray(w.mean)) / np.asarray(w.scale)
        logits = np.asarray(w.coef) @ x + np.asarray(w.intercept)
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        verdict = VERDICTS[int(probs.argmax())]
        if features[3] == 0.0 and features[1] == 0.0:
            verdict = "incorrect"  # one word and no key term ("b", "BERT"): nothing to give credit for
        score = float(probs[0] + 0.5 * probs[1])
        return Grade(verdict, score, float(features[0]), float(features[1]), missing, reference)

    def _choice(self, item: Item, answer: str) -> Grade:
        right = item.options.index(item.answer) if item.answer in item.options else -1
        shown = f"{option_label(right)}) {item.answer}" if right >= 0 else item.answer
        return _exact(parse_choice(answer, item.options) == right, shown)

    def _true_false(self, item: Item, answer: str) -> Grade:
        return _exact(parse_true_false(answer) == (item.answer == "true"), item.reference)

    def mentions(self, term: str, answer: str) -> bool:
        """Does the answer contain the term? Stems, folded accents, cognates and one-letter typos count."""
        words = [w for w in re.findall(r"[\w-]+", term) if len(w) > 1 or w.isdigit()]
        if not words:
            return False
        said = re.findall(r"[\w-]+", answer)
        said_fold = {fold(w) for w in said}
        said_stems = set(self.tokens(answer))
        said_cognates = {cognate(w) for w in said if len(w) >= 5}
        hits = 0
        for word in words:
            stem = self.tokens(word)
            if fold(word) in said_fold or (stem and stem[0] in said_stems):
                hits += 1
            elif len(word) >= 5 and (cognate(word) in said_cognates or _close(fold(word), said_fold)):
                hits += 1
        return hits * 2 >= len(words)  # "Facebook AI": "Facebook" is enough


def _close(word: str, said: Iterable[str]) -> bool:
    return any(abs(len(w) - len(word)) <= 2 and difflib.SequenceMatcher(None, w, word).ratio() >= 0.85 for w in said)


def parse_true_false(answer: str) -> bool | None:
    """True, False or None (not an answer) from 'verdadero', 'F', 'false', 'es falso', 'vrai'…"""
    words = [fold(w) for w in re.findall(r"\w+", answer.lower())][:6]
    says_true = any(w in {fold(t) for t in _TRUE} for w in words)
    says_false = any(w in _FALSE for w in words)
    if says_true == says_false:
        return None
    return says_true


def parse_choice(answer: str, options: Sequence[str]) -> int | None:
    """The option index an answer picks: a letter ('b', 'B)', 'la c'), a number, or the option's text."""
    text = fold(answer).strip(" .!?¿¡()")
    match = re.fullmatch(r"(?:(?:la|el|opcion|option|respuesta|answer|la opcion)\s+)?([a-h])\)?", text)
    if match:
        n = ord(match.group(1)) - ord("a")
        return n if n < len(options) else None
    if text.isdigit() and 1 <= int(text) <= len(options):
        return int(text) - 1
    found = [n for n, option in enumerate(options) if re.search(rf"(?<!\w){re.escape(fold(option))}(?!\w)", text)]
    return found[0] if len(found) == 1 else None


def option_label(n: int) -> str:
    return "ABCDEFGH"[n]


def _exact(ok: bool, expected: str) -> Grade:
    return Grade("correct" if ok else "incorrect", float(ok), coverage=float(ok), expected=expected)


# --- the labelled set: eval/grading.jsonl ---------------------------------------------------------


@dataclass(frozen=True)
class LabelledAnswer:
    id: str
    split: str  # tune | held
    language: str
    item: str  # bank item id
    answer: str
    label: str  # correct | partial | incorrect
    question: str = ""
    reference: str = ""


def load_labelled_answers(path: Path) -> list[LabelledAnswer]:
    """The labelled answers; ValueError names the line of a malformed one."""
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            row = LabelledAnswer(**{k: data[k] for k in LabelledAnswer.__dataclass_fields__ if k in data})
        except (ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"{path.name}: line {n}: {exc}") from exc
        if row.label not in VERDICTS or row.split not in ("tune", "held"):
            raise ValueError(f"{path.name}: line {n}: label or split not valid")
        rows.append(row)
    return rows


def measure(grader: Grader, examples: Sequence[LabelledAnswer], items: dict[str, Item], *,
            tune: bool = False) -> dict[str, Any]:  # fmt: skip
    """Agreement with the labels per split and language; with tune, first refit the weights on 'tune' only."""
    signals = []
    for ex in examples:
        item = items.get(ex.item)
        if item is None:
            raise ValueError(f"{ex.id}: item {ex.item} is not in the bank (was the course changed?)")
        if gives_up(ex.answer):
            continue
        signals.append((ex, *grader.signals(item, ex.answer)))
    weights = fit([(f, ex.label) for ex, f, _ in signals if ex.split == "tune"]) if tune else grader.weights
    result: dict[str, Any] = {"n": len(examples), "weights": weights.__dict__}
    for split in ("tune", "held"):
        rows = [(ex, grader.decide(f, weights=weights).verdict) for ex, f, _ in signals if ex.split == split]
        result[split] = _agreement(rows)
    return result


def fit(rows: Sequence[tuple[Sequence[float], str]]) -> Weights:
    """A standardised multinomial logistic regression (scikit-learn, C=1) on the tuning rows."""
    from sklearn.linear_model import LogisticRegression

    x = np.asarray([f for f, _ in rows], dtype=float)
    y = np.asarray([VERDICTS.index(label) for _, label in rows])
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    model = LogisticRegression(C=1.0, max_iter=5000).fit((x - mean) / scale, y)
    order = [list(model.classes_).index(k) for k in range(len(VERDICTS))]

    def r(v: Iterable[float]) -> tuple[float, ...]:
        return tuple(round(float(a), 4) for a in v)

    return Weights(r(mean), r(scale), tuple(r(model.coef_[i]) for i in order), r(model.intercept_[order]))


def _agreement(rows: Sequence[tuple[LabelledAnswer, str]]) -> dict[str, Any]:
    out: dict[str, Any] = {"n": len(rows), "agreement": _rate(rows)}
    for lang in sorted({ex.language for ex, _ in rows}):
        out[lang] = _rate([r for r in rows if r[0].language == lang])
    out["confusion"] = {gold: {pred: sum(1 for ex, p in rows if ex.label == gold and p == pred) for pred in VERDICTS}
                        for gold in VERDICTS}  # fmt: skip
    out["errors"] = [f"{ex.id}: {ex.label} -> {pred}" for ex, pred in rows if ex.label != pred]
    return out


def _rate(rows: Sequence[tuple[LabelledAnswer, str]]) -> float:
    return round(sum(1 for ex, pred in rows if ex.label == pred) / len(rows), 3) if rows else 0.0


def grading_file() -> Path:
    return PROJECT_DIR / "eval" / "grading.jsonl"
