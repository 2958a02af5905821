"""Hybrid retrieval: Spanish BM25, dense chunk and sentence vectors (the configured embedder) and USE
sentence vectors, fused by weighted reciprocal rank with weights chosen per embedder (`PROFILES`).

`Retriever.search(query, k)` returns up to k passages, at most `per_section` from one section, so
the top k covers distinct sections; an overview (a parent section, the course's introduction) counts
a little less than the subsection that answers. `search_query` makes a follow-up self-contained with
the conversation's topic. Local Chroma has no hybrid search, hence the fusion here.
It does not decide whether a question is on topic (the gate does), nor translate it.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from tutor.config import Settings
from tutor.errors import BadQuery
from tutor.index import Index
from tutor.types import Chunk, Passage

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffd]")
FOLLOW_UP_WORDS = 12  # a longer question stands on its own (eval/dev.jsonl: 16 did no better)
TOPIC_WORDS = 40  # how much of the conversation's topic goes into a follow-up's query


@dataclass(frozen=True)
class Profile:
    """How the four lists are fused for one embedder (docs/retrieval.md has the measurements).

    bm25, chunks, sentences, use: each list's weight; rrf_k: the fusion constant; question: the weight
    of the student's own words, searched beside a follow-up's query with the conversation's topic
    (the query itself weighs 1); overview: the factor on a parent section's or the introduction's score."""

    bm25: float
    chunks: float
    sentences: float
    use: float
    rrf_k: int
    question: float
    overview: float


# Chosen on eval/dev.jsonl and confirmed on eval/heldout.jsonl, for each embedder. A strong embedder
# needs BM25 and USE less, and a smaller rank constant; the weak one keeps the shipped 1/1/1/0.5, k 20.
PROFILES: dict[str, Profile] = {
    "embeddinggemma": Profile(bm25=0.5, chunks=1, sentences=1, use=0.25, rrf_k=10, question=0.5, overview=0.85),
    "": Profile(bm25=1, chunks=1, sentences=1, use=0.5, rrf_k=20, question=0.25, overview=0.85),
}


def profile_for(embedder_name: str, settings: Settings) -> Profile:
    """The profile whose key the embedder's name contains ("" for any other embedder, e5 among them);
    TUTOR_RRF_K and TUTOR_USE_WEIGHT, when set, override it."""
    name = embedder_name.lower()
    profile = next((p for key, p in PROFILES.items() if key and key in name), PROFILES[""])
    given = settings.model_fields_set
    rrf_k = settings.rrf_k if "rrf_k" in given else profile.rrf_k
    use = settings.use_weight if "use_weight" in given else profile.use
    return replace(profile, rrf_k=rrf_k, use=use)


def clean_query(text: str, max_chars: int) -> str:
    """The searchable part of a question: control characters dropped, spaces collapsed, length capped."""
    text = " ".join(_CONTROL.sub(" ", text).split())[:max_chars]
    if not re.search(r"\w", text):
        raise BadQuery("La pregunta está vacía o no tiene palabras: escriba una pregunta sobre el curso.")
    return text


class Retriever:
    """BM25-es + dense chunks + dense best sentence of each chunk + USE best sentence, fused with RRF."""

    def __init__(self, index: Index, settings: Settings) -> None:
        self.index = index
        self.settings = settings
        self.profile = profile_for(index.embedder.name, settings)
        self._overview = overview_sections(index.chunks.values())

    def search(self, query: str, k: int | None = None, *, question: str | None = None) -> list[Passage]:
        """The k best passages for a question, best first; BadQuery if it has no words.

        Args:
            question: the student's own words when `query` adds the conversation's topic to them
                (search_query): searched too, at the profile's `question` weight, so that a question
                on a new subject is not pulled back to the previous one."""
        k = k or self.settings.top_k
        query = clean_query(query, self.settings.max_query_chars)
        queries = [(query, 1.0)]
        own = " ".join(_CONTROL.sub(" ", question or "").split())[: self.settings.max_query_chars]
        if own != query and re.search(r"\w", own) and self.profile.question > 0:
            queries.append((own, self.profile.question))
        fused: dict[str, float] = {}
        lexical: list[str] = []
        dense: list[str] = []
        for number, (text, weight) in enumerate(queries):
            # One text per call: e5 keeps the last vectors it made, and the gate has just embedded the question.
            lists = self._rankings(text, self.index.embedder.embed_queries([text])[0])
            if number == 0:
                lexical, dense = lists[0][1], lists[1][1]  # the ranks a Passage reports are the main query's
            for list_weight, ranking in lists:
                for rank, chunk_id in enumerate(ranking, start=1):
                    score = weight * list_weight / (self.profile.rrf_k + rank)
                    fused[chunk_id] = fused.get(chunk_id, 0.0) + score
        for chunk_id in fused:
            if self._key(self.index.chunks[chunk_id]) in self._overview:
                fused[chunk_id] *= self.profile.overview
        return self._passages(fused, lexical, dense, k)

    def _rankings(self, text: str, vector: np.ndarray) -> list[tuple[float, list[str]]]:
        """(weight, chunk ids best first) of each list: BM25 and dense chunks first, then the sentence lists."""
        n, p = self.settings.candidates, self.profile
        lists = [(p.bm25, self.index.lexical(text, n)), (p.chunks, self.index.dense(vector, n))]
        lists.append((p.sentences, self.index.dense_sentences(vector, n)))
        if p.use > 0:
            lists.append((p.use, self.index.use_sentences(text, n)))
        return lists

    def _passages(self, fused: Mapping[str, float], lexical: list[str], dense: list[str], k: int) -> list[Passage]:
        lex_rank = {c: r for r, c in enumerate(lexical, start=1)}
        dense_rank = {c: r for r, c in enumerate(dense, start=1)}
        per_section: Counter[str] = Counter()
        passages: list[Passage] = []
        for chunk_id in sorted(fused, key=lambda c: (-fused[c], c)):
            chunk = self.index.chunks[chunk_id]
            if per_section[self._key(chunk)] >= self.settings.per_section:
                continue
            per_section[self._key(chunk)] += 1
            passages.append(Passage(chunk, fused[chunk_id], lex_rank.get(chunk_id), dense_rank.get(chunk_id)))
            if len(passages) == k:
                break
        return passages

    @staticmethod
    def _key(chunk: Chunk) -> str:
        return f"{chunk.source}#{chunk.section_id}"


def overview_sections(chunks: Iterable[Chunk]) -> set[str]:
    """Sections (as "source#id") that introduce others rather than answer: a section with subsections
    ("4.3" beside "4.3.1"; "a" beside "a/b" for unnumbered headings) and, in a file of numbered sections,
    an unnumbered one (its "Introducción", the text before the first heading). Their paragraphs name
    what the subsections explain, so they often outranked the subsection that answers."""
    by_source: dict[str, list[str]] = {}
    for chunk in chunks:
        ids = by_source.setdefault(chunk.source, [])
        if chunk.section_id not in ids:
            ids.append(chunk.section_id)
    overview: set[str] = set()
    for source, ids in by_source.items():
        numbers = [bool(re.fullmatch(r"\d+(\.\d+)*", s)) for s in ids]
        numbered = sum(numbers) > len(ids) / 2
        for section, has_number in zip(ids, numbers):
            parent = any(other.startswith((f"{section}.", f"{section}/")) for other in ids)
            if parent or (numbered and not has_number):
                overview.add(f"{source}#{section}")
    return overview


def search_query(question: str, history: Sequence[Mapping[str, Any]] = ()) -> str:
    """A short follow-up such as "¿y en qué se diferencia de BERT?" is searched with the conversation's
    topic before it: what the last answer was searched with (its meta's `question`), or else the previous
    student messages, each short one with its own topic. A long question stands on its own, and so does
    one that follows a refusal or redirect, which says nothing about the topic. Search it together with
    the question alone (Retriever.search's `question`): on its own, this query would pull a question
    on a new subject back to the previous one."""
    if len(question.split()) > FOLLOW_UP_WORDS:
        return question
    turns = [t for t in history if str(t.get("content", "")).strip()]
    replies = [i for i, t in enumerate(turns) if t.get("role") == "assistant"]
    if replies and (turns[replies[-1]].get("meta") or {}).get("kind", "answer") not in ("answer", "hint"):
        return question
    topic = _topic(turns)
    return f"{topic} {question}" if topic else question


def _topic(turns: Sequence[Mapping[str, Any]]) -> str:
    """The last TOPIC_WORDS words of what the conversation is about, before the current message: the
    student's messages from the newest back, while they are short follow-ups, or up to the first one
    whose answer kept what it was searched with (meta "question"), which already carries its topic."""
    users = [i for i, t in enumerate(turns) if t.get("role") == "user"]
    parts: list[str] = []
    for position in range(len(users) - 1, -1, -1):
        start, end = users[position], users[position + 1] if position + 1 < len(users) else len(turns)
        metas = [t.get("meta") or {} for t in turns[start + 1 : end] if t.get("role") == "assistant"]
        searched = str(metas[0].get("question") or "").strip() if metas else ""
        parts.insert(0, searched or str(turns[start]["content"]))
        words = sum(len(p.split()) for p in parts)
        if searched or len(parts[0].split()) > FOLLOW_UP_WORDS or words >= TOPIC_WORDS:
            break
    return " ".join(" ".join(parts).split()[-TOPIC_WORDS:])
