"""Extractive answers: the course's own sentences that best answer the question, with their citations.

This is the answer when no model is loaded and the fallback when generated text fails verification.
Sentences are scored by e5 similarity to the question plus stemmed term overlap, the best few are
kept in course order, and a short templated sentence in the student's language introduces them.
It never rewrites a sentence of the course.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tutor.index import Index
from tutor.prompts import PromptLibrary
from tutor.types import Passage


@dataclass(frozen=True)
class Extract:
    text: str  # intro + quoted sentences with § citations
    sentences: tuple[tuple[str, str], ...]  # (section id, sentence) in the order shown


class Extractor:
    def __init__(self, index: Index, prompts: PromptLibrary, *, max_sentences: int = 3) -> None:
        self.index = index
        self.prompts = prompts
        self.max_sentences = max_sentences

    def answer(self, question: str, passages: Sequence[Passage], language: str) -> Extract:
        """The best passage sentences for the question, introduced in the student's language."""
        rows = self.index.sentences_of([p.chunk.id for p in passages])
        if not rows:
            return Extract(self.prompts.reply("no_passages", language), ())
        q_vec = self.index.embedder.embed_queries([question])[0]
        q_terms = set(self.index.tokens(question))
        scored = []
        for order, (chunk_id, sentence, vector) in enumerate(rows):
            terms = set(self.index.tokens(sentence))
            overlap = len(q_terms & terms) / len(q_terms) if q_terms else 0.0
            scored.append((float(vector @ q_vec) + 0.15 * overlap, order, chunk_id, sentence))
        scored.sort(reverse=True)
        best = scored[0][0]
        chosen = [row for row in scored[: self.max_sentences] if row[0] >= best - 0.03]
        chosen.sort(key=lambda row: row[1])  # course order reads better than score order
        # A bullet's dash belongs to the list, not to the quote.
        shown = tuple((self.index.chunks[c].section_id, s.lstrip("-•* ").strip()) for _, _, c, s in chosen)
        lines = [f"- «{sentence}» (§{section})" for section, sentence in shown]
        intro = self.prompts.reply("extractive_intro", language)
        return Extract("\n".join([intro, *lines]), shown)
