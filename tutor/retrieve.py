"""Hybrid retrieval: Spanish BM25, dense chunk and sentence vectors (e5) and USE sentence vectors,
fused by weighted reciprocal rank.

`Retriever.search(query, k)` returns up to k passages, at most `per_section` from one section, so
the top k covers distinct sections. Local Chroma has no hybrid search, hence the fusion here.
It does not decide whether a question is on topic (the gate does) nor rewrite follow-ups.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from tutor.config import Settings
from tutor.errors import BadQuery
from tutor.index import Index
from tutor.types import Passage

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffd]")


def clean_query(text: str, max_chars: int) -> str:
    """The searchable part of a question: control characters dropped, spaces collapsed, length capped."""
    text = " ".join(_CONTROL.sub(" ", text).split())[:max_chars]
    if not re.search(r"\w", text):
        raise BadQuery("La pregunta está vacía o no tiene palabras: escriba una pregunta sobre el curso.")
    return text


class Retriever:
    """BM25-es + e5 (chunks) + e5 (best sentence of each chunk) + USE (best sentence), fused with RRF.

    The four lists weigh 1, 1, 1 and `use_weight` (0.5). USE alone is the weakest list on eval/dev.jsonl
    but often ranks first the sentence the others miss; at full weight it pulled good answers down."""

    def __init__(self, index: Index, settings: Settings) -> None:
        self.index = index
        self.settings = settings

    def search(self, query: str, k: int | None = None) -> list[Passage]:
        """The k best passages for a question, best first; BadQuery if it has no words."""
        k = k or self.settings.top_k
        query = clean_query(query, self.settings.max_query_chars)
        n = self.settings.candidates
        vector = self.index.embedder.embed_queries([query])[0]
        lexical = self.index.lexical(query, n)
        dense = self.index.dense(vector, n)
        rankings = [(1.0, lexical), (1.0, dense), (1.0, self.index.dense_sentences(vector, n))]
        if self.settings.use_weight > 0:
            rankings.append((self.settings.use_weight, self.index.use_sentences(query, n)))
        fused: dict[str, float] = {}
        for weight, ranking in rankings:
            for rank, chunk_id in enumerate(ranking, start=1):
                fused[chunk_id] = fused.get(chunk_id, 0.0) + weight / (self.settings.rrf_k + rank)
        lex_rank = {c: r for r, c in enumerate(lexical, start=1)}
        dense_rank = {c: r for r, c in enumerate(dense, start=1)}
        per_section: Counter[str] = Counter()
        passages: list[Passage] = []
        for chunk_id in sorted(fused, key=lambda c: (-fused[c], c)):
            chunk = self.index.chunks[chunk_id]
            key = f"{chunk.source}#{chunk.section_id}"
            if per_section[key] >= self.settings.per_section:
                continue
            per_section[key] += 1
            passages.append(Passage(chunk, fused[chunk_id], lex_rank.get(chunk_id), dense_rank.get(chunk_id)))
            if len(passages) == k:
                break
        return passages


def search_query(question: str, history: Sequence[dict[str, Any]] = ()) -> str:
    """A follow-up such as "¿y en qué se diferencia de BERT?" is searched together with the previous
    exchange (the student's question and the start of the reply); a long question stands on its own,
    and so does one that follows a refusal or redirect, which says nothing about the topic.
    (A model-based rewrite may replace this.)"""
    if len(question.split()) > 12:
        return question
    turns = [t for t in history if str(t.get("content", "")).strip()]
    replies = [i for i, t in enumerate(turns) if t.get("role") == "assistant"]
    if replies and (turns[replies[-1]].get("meta") or {}).get("kind", "answer") not in ("answer", "hint"):
        return question
    end = replies[-1] if replies else len(turns)
    asked = [t for t in turns[:end] if t.get("role") == "user"]
    context = [t["content"] for t in asked[-1:]] + ([turns[replies[-1]]["content"]] if replies else [])
    return " ".join([*(" ".join(c.split()[:40]) for c in context), question])
