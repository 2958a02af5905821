"""Extractive answers: the course's own sentences that best answer the question, with their citations.

This is the answer when no model is loaded, the first visible text of every answer, and the fallback
when generated text fails verification. Each sentence of the passages is scored by e5 similarity to
the question plus the share of the question's rare terms it contains; the best sentence of the
best-ranked passage leads, and up to two more follow, best first, if they clear a relevance floor.
A heading stub ("4. Perplejidad:") is never quoted alone: it is joined to the sentence it introduces.
It never rewrites the course's words, and it does not rank passages (retrieve.py does): on
eval/dev.jsonl and eval/heldout.jsonl, letting a lower passage's sentence lead lost on held-out.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from tutor.index import Index
from tutor.ingest import sentences as split_sentences
from tutor.prompts import PromptLibrary
from tutor.types import Passage

# "- ", "• ", "3. ", "2) ": the list's marks, not part of the quote.
_LIST_MARK = re.compile(r"^\s*(?:[-•*]|\d{1,2}[.)])\s+")


@dataclass(frozen=True)
class Extract:
    text: str  # intro + quoted sentences with § citations
    sentences: tuple[tuple[str, str], ...]  # (section id, sentence) in the order shown, the best first


@dataclass(frozen=True)
class Weights:
    """How sentences are scored and kept; each value was measured on eval/dev.jsonl and held on
    eval/heldout.jsonl (first quote on target, first quote with a keyword, prose keyword recall)."""

    lexical: float = 0.1  # × the idf-weighted share of the question's terms the quote contains
    heading: float = 0.5  # a term only in the quote's heading ("4. Perplejidad:") counts this much
    short_words: int = 6  # a quote under this many words ("Una red neuronal feed-forward.")…
    short: float = 0.02  # …loses this much
    margin: float = 0.10  # a follower scores at least the best score minus this…
    margin_new: float = 0.05  # …or minus this if its section is not quoted yet (most off-target quotes)
    floor: float = 0.78  # and its e5 similarity is at least this (below it ≤16% were on target)
    prior: float = 0.08  # a follower gains prior / (1 + its passage's rank)
    coverage: float = 0.1  # and this × the share of the question's terms no earlier quote has


@dataclass(frozen=True)
class _Candidate:
    rank: int  # of its passage, 0 = best
    position: int  # in its chunk
    section: str
    quote: str
    dense: float  # e5 query·sentence cosine
    score: float
    terms: frozenset[str]


class Extractor:
    def __init__(
        self, index: Index, prompts: PromptLibrary, *, max_sentences: int = 3, weights: Weights | None = None
    ) -> None:
        self.index = index
        self.prompts = prompts
        self.max_sentences = max_sentences
        self.weights = weights or Weights()

    def answer(self, question: str, passages: Sequence[Passage], language: str) -> Extract:
        """The best passage sentences for the question, the best first, introduced in the student's language."""
        candidates = self._candidates(question, passages)
        if not candidates:
            return Extract(self.prompts.reply("no_passages", language), ())
        shown = tuple((c.section, c.quote) for c in self._choose(candidates, self._question_weights(question)))
        lines = [f"- «{sentence}» (§{section})" for section, sentence in shown]
        intro = self.prompts.reply("extractive_intro", language)
        return Extract("\n".join([intro, *lines]), shown)

    @cached_property
    def _idf(self) -> dict[str, float]:
        """Inverse document frequency of each course term over the course's sentences (about 40 ms, once):
        "perplejidad" weighs more than "modelo"."""
        units = {u for chunk in self.index.chunks.values() for u in split_sentences(chunk.text)}
        df: Counter[str] = Counter()
        for unit in units:
            df.update(set(self.index.tokens(unit)))
        return {term: math.log(1 + len(units) / n) for term, n in df.items()}

    def _question_weights(self, question: str) -> dict[str, float]:
        """The question's course terms with their idf; a term the course never uses cannot be matched."""
        return {t: self._idf[t] for t in set(self.index.tokens(question)) if t in self._idf}

    def _candidates(self, question: str, passages: Sequence[Passage]) -> list[_Candidate]:
        """Every quotable sentence of the passages with its score. Only sentences with a stored vector
        (four words or more) are quotable; the vector is the sentence's, even when a heading is joined."""
        rows = self.index.sentences_of([p.chunk.id for p in passages])
        if not rows:
            return []
        vectors = {(chunk_id, sentence): vector for chunk_id, sentence, vector in rows}
        q_vec = self.index.embedder.embed_queries([question])[0]
        weights = self._question_weights(question)
        total = sum(weights.values()) or 1.0
        w = self.weights
        found = []
        for rank, passage in enumerate(passages):
            for position, unit, quote, heading in quotable(split_sentences(passage.chunk.text)):
                vector: np.ndarray | None = vectors.get((passage.chunk.id, unit))
                if vector is None:
                    continue
                terms = frozenset(self.index.tokens(quote))
                context = set(self.index.tokens(heading)) - terms
                lexical = sum(v for t, v in weights.items() if t in terms)
                lexical += w.heading * sum(v for t, v in weights.items() if t in context)
                dense = float(vector @ q_vec)
                score = dense + w.lexical * lexical / total - (w.short if len(quote.split()) < w.short_words else 0.0)
                found.append(_Candidate(rank, position, passage.section_id, quote, dense, score, terms))
        return found

    def _choose(self, candidates: list[_Candidate], weights: dict[str, float]) -> list[_Candidate]:
        """The lead (the best sentence of the best-ranked passage), then followers above the floor,
        each the best by score, passage rank and the question terms it adds (one good sentence per
        asked part), skipping near-repeats (chunks overlap, so a sentence can come twice)."""
        w = self.weights
        ordered = sorted(candidates, key=lambda c: (-c.score, c.rank, c.position))
        first_rank = min(c.rank for c in ordered)
        chosen = [next(c for c in ordered if c.rank == first_rank)]
        best = ordered[0].score
        total = sum(weights.values()) or 1.0
        eligible = [c for c in ordered if c.score >= best - w.margin and c.dense >= w.floor]
        while len(chosen) < self.max_sentences:
            covered = {t for c in chosen for t in c.terms}
            sections = {c.section for c in chosen}
            new = [
                c
                for c in eligible
                if not any(_repeats(c, d) for d in chosen) and (c.section in sections or c.score >= best - w.margin_new)
            ]
            if not new:
                break

            def value(c: _Candidate) -> float:
                added = sum(v for t, v in weights.items() if t in c.terms and t not in covered)
                return c.score + w.prior / (1 + c.rank) + w.coverage * added / total

            chosen.append(max(new, key=value))  # first of equals: the higher score
        return chosen


def quotable(units: Sequence[str]) -> Iterator[tuple[int, str, str, str]]:
    """(position, unit, quote, heading) for each sentence that may be quoted.

    A stub (a line ending in ":" or under four words) is never quoted alone; the sentence right after
    a ":" stub is quoted with it, and every later sentence keeps it as its heading:

    >>> units = ["4. Perplejidad:", "Se utiliza para evaluar modelos.", "Un valor bajo es mejor."]
    >>> [quote for _, _, quote, _ in quotable(units)]
    ['Perplejidad: Se utiliza para evaluar modelos.', 'Un valor bajo es mejor.']
    """
    heading = ""
    for position, unit in enumerate(units):
        if is_stub(unit):
            heading = unit if unit.rstrip().endswith(":") else heading
            continue
        introduced = bool(heading) and position > 0 and units[position - 1] == heading
        yield position, unit, f"{bare(heading)} {bare(unit)}" if introduced else bare(unit), heading


def is_stub(unit: str) -> bool:
    """A heading-like line that says nothing alone: "Características clave del Transformer:", "- SGD:"."""
    text = unit.strip()
    return text.endswith(":") or len(text.split()) < 4


def bare(unit: str) -> str:
    """The unit without its list mark: "- Adam (…): Combina…" -> "Adam (…): Combina…"."""
    return _LIST_MARK.sub("", unit.strip(), count=1)


def _repeats(a: _Candidate, b: _Candidate) -> bool:
    """The same sentence, or nearly (80% of their terms shared)."""
    if a.quote == b.quote:
        return True
    union = a.terms | b.terms
    return bool(union) and len(a.terms & b.terms) / len(union) >= 0.8
