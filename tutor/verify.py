"""Verification: is each generated sentence supported by the retrieved course passages?

A sentence is kept when it is close to a passage sentence (e5 similarity), most of its content words
occur in the passages or the question, every number, name and acronym in it does too (the packaged
model invents numbers: "GPT-3 tiene 10 parámetros"), and, in a Spanish reply, what it is about (its
subject) is in the chunk of the passage sentence it resembles most. The whole text is rejected when
it is empty, in the wrong language, an echo of the prompt, or a loop, and, in a Spanish reply, when
a sentence's subject is a word of the question that the course never uses in any form: asked "¿qué
es el beam search?", the packaged model answers "El beam search es un método de ajuste…" from
whatever passage came back, every other word taken from the course. (In another language the
course's own terms are translated, "modèles multimodaux", so their absence from the Spanish text
proves nothing.) Where a meaning model was fitted for the embedder (meaning.py), it decides each
sentence from those measurements instead of the bars, and, when the model that wrote the reply gave
its tokens' entropies, the model fitted with them. It does not write the fallback answer (extract.py
does) and never edits a sentence: it keeps or drops it.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from tutor.index import Index
from tutor.meaning import Evidence, MeaningModel, contradiction, load_for, missing_name, missing_number
from tutor.text import Vocabulary, fold, subject
from tutor.text import sentences as split_sentences
from tutor.types import Passage

Entropy = Callable[[Sequence[str]], Sequence[float | None]]  # sentences -> each one's mean token entropy


@dataclass(frozen=True)
class Verdict:
    verified: bool
    text: str  # the kept sentences, in order
    kept: tuple[str, ...]
    removed: tuple[tuple[str, str], ...]  # (sentence, why)
    rejected: str | None = None  # why the whole text was refused: empty | language | echo | loop | unnamed | too_little
    unnamed: tuple[str, ...] = ()  # question words the course never uses that the text talked about as its subject


class Verifier:
    """Checks generated text against the passages it should rest on."""

    def __init__(
        self,
        index: Index,
        detect_language: Callable[[str], str] | None = None,
        *,
        min_similarity: float | None = None,
        min_overlap: float = 0.6,
        min_kept_share: float = 0.5,
        meaning: MeaningModel | None | Literal["auto"] = "auto",
        token_meaning: MeaningModel | None | Literal["auto"] = "auto",
        precision: float | None = None,
    ) -> None:
        """precision: the share of shown sentences the meaning check aims to have supported, its threshold
        read from each model's saved curve (TUTOR_VERIFIER_PRECISION); None keeps the fitted thresholds."""
        self.index = index
        # The meaning check fitted on this embedder's similarities (tutor/meaning_data/), else the lexical rules;
        # for a reply whose tokens' entropies the model gave, the one fitted with them too, where there is one.
        self.meaning = load_for(index.embedder.name) if meaning == "auto" else meaning
        if token_meaning == "auto":
            token_meaning = load_for(index.embedder.name, tokens=True) if meaning == "auto" else None
        self.token_meaning = token_meaning
        if precision is not None:
            self.meaning = self.meaning and self.meaning.for_precision(precision)
            self.token_meaning = self.token_meaning and self.token_meaning.for_precision(precision)
        self.detect_language = detect_language
        # 0.86 was tuned on e5's cosines; another embedder may say where its own bar is (issue 16).
        default = float(getattr(index.embedder, "sentence_similarity", 0.86))
        self.min_similarity = default if min_similarity is None else min_similarity
        self.min_overlap = min_overlap
        self.min_kept_share = min_kept_share
        self.vocabulary = Vocabulary(index.chunks.values(), stemmed=True)
        self._anchors: dict[str, Vocabulary] = {}  # chunk id -> its own words (see _unsupported)

    def check(self, text: str, *, question: str, passages: Sequence[Passage], language: str, prompt: str = "",
              entropy: Entropy | None = None, writer: str | None = None) -> Verdict:  # fmt: skip
        """Keep the supported sentences; `verified` is False when too little of the text survives.

        Args:
            writer: the catalogue name of the model that wrote the text (writer_name), for its own
                threshold; None (a server, a file of one's own) for the pooled one."""
        assessment = self.assess(text, question=question, passages=passages, language=language, prompt=prompt,
                                 entropy=entropy)  # fmt: skip
        if isinstance(assessment, Verdict):
            return assessment
        kept: list[str] = []
        removed: list[tuple[str, str]] = []
        for evidence in assessment:
            reason = self._reason(evidence, writer)
            if reason:
                removed.append((evidence.sentence, reason))
            else:
                kept.append(evidence.sentence)
        kept_words = sum(len(s.split()) for s in kept)
        total_words = sum(len(e.sentence.split()) for e in assessment)
        verified = bool(kept) and kept_words >= self.min_kept_share * total_words
        return Verdict(verified, " ".join(kept), tuple(kept), tuple(removed), None if verified else "too_little")

    def assess(self, text: str, *, question: str, passages: Sequence[Passage], language: str, prompt: str = "",
               entropy: Entropy | None = None) -> Verdict | list[Evidence]:  # fmt: skip
        """What is measured of each sentence against the passages; a refusing Verdict when the whole text
        cannot be shown (see `rejected`, and the subject the course never names).

        Args:
            entropy: each sentence's mean token entropy as the model wrote it (meaning.piece_entropies),
                when the model gave them."""
        text = text.strip()
        sentences = [s for s in split_sentences(text) if re.search(r"\w", s)]
        rejected = self.rejected(text, question=question, passages=passages, language=language, prompt=prompt)
        if rejected:
            return Verdict(False, "", (), (), rejected)
        # Question words, folded -> as the student wrote them; Spanish replies only (the course's language).
        asked = {fold(w): w for w in re.findall(r"\w+", question)} if language == "es" else {}
        unnamed = [(s, " ".join(asked[w] for w in words)) for s in sentences if (words := self.unnamed(s, asked))]
        if unnamed:
            talked = tuple((s, f"habla de «{term}», que el curso no nombra") for s, term in unnamed)
            return Verdict(False, "", (), talked, "unnamed", unnamed=tuple(dict.fromkeys(t for _, t in unnamed)))

        source = "\n".join([question, *(p.chunk.text for p in passages)])
        rows = self.index.sentences_of([p.chunk.id for p in passages])
        matrix = np.stack([v for _, _, v in rows]) if rows else np.zeros((0, self.index.embedder.dim))
        # Spanish only, as for `unnamed`: the chunk each passage sentence belongs to, to anchor subjects in.
        anchors = [self._anchor(chunk_id) for chunk_id, _, _ in rows] if language == "es" else []
        vectors = self.index.embedder.embed_passages([*sentences, question])
        facts = _Source(source, fold(source), set(self.index.tokens(source)), matrix, anchors)
        instructions = _instruction_grams(prompt, passages, question) if prompt else set()
        entropies = entropy(sentences) if entropy else [None] * len(sentences)
        out = []
        for position, (sentence, vector, sure) in enumerate(zip(sentences, vectors, entropies)):
            similarity = matrix @ vector
            order = np.argsort(-similarity)[:3]
            # Dropped whatever the meaning check says: a number or name the passages lack, the course's own
            # words turned round (contradiction), or words of the tutor's own instructions.
            echoed = any(g in instructions for g in _ngrams(fold(sentence).split(), 5))
            number, name = missing_number(sentence, source), missing_name(sentence, facts.folded)
            contradicts = contradiction(sentence, rows[order[0]][1]) if rows else None
            if echoed:
                reason: str | None = "repite las instrucciones del tutor"
            elif number or name:
                reason = f"número ausente del curso: {number}" if number else f"nombre ausente del curso: {name}"
            elif contradicts:
                reason = contradicts
            else:
                reason = self._unsupported(sentence, similarity, facts)
            invented = number or name or contradicts or ("instrucciones" if echoed else None)
            out.append(Evidence(
                sentence, tuple(rows[i][1] for i in order), tuple(float(similarity[i]) for i in order),
                float(vectors[-1] @ vector), source, language, reason, position, len(sentences), invented, sure,
            ))  # fmt: skip
        return out

    def _reason(self, evidence: Evidence, writer: str | None = None) -> str | None:
        """Why the sentence is dropped, or None: the meaning check where there is one, else the lexical rules."""
        model = self.meaning
        if evidence.entropy_mean is not None and self.token_meaning is not None:
            model = self.token_meaning
        if model is None or evidence.invented:
            return evidence.lexical_reason
        score, threshold = model.score(evidence), model.threshold_for(writer)
        if score >= threshold:
            return None
        because = f"comprobación de sentido {score:.2f} < {threshold:.2f}"
        if evidence.lexical_reason:
            return f"{evidence.lexical_reason}; {because}"
        return f"el pasaje no dice esto ({because})"

    def rejected(
        self, text: str, *, question: str, passages: Sequence[Passage] = (), language: str, prompt: str = ""
    ) -> str | None:
        """Why the whole text cannot be shown whatever it says (empty, loop, echo, language), or None."""
        text = text.strip()
        if len(text.split()) < 3 or not re.search(r"\w", text):
            return "empty"
        if _is_loop(text):
            return "loop"
        if prompt and _is_echo(text, prompt, passages, question):
            return "echo"
        if self.detect_language and len(text.split()) >= 5 and self.detect_language(text) != language:
            return "language"
        return None

    def unnamed(self, sentence: str, asked: Collection[str]) -> list[str]:
        """Words of the sentence's subject that the student asked about and the course never uses in any
        form ("podar" is the course's: it says "poda"; stopwords are nobody's)."""
        return [w for w in subject(sentence) if w in asked and not self.vocabulary.names(w)]

    def _anchor(self, chunk_id: str) -> Vocabulary:
        if chunk_id not in self._anchors:
            self._anchors[chunk_id] = Vocabulary([self.index.chunks[chunk_id]], stemmed=True)
        return self._anchors[chunk_id]

    def _unsupported(self, sentence: str, similarity: np.ndarray, source: _Source) -> str | None:
        """The lexical rules' reason to drop a sentence with no invented number or name (`similarity`: its
        cosine with each passage sentence)."""
        words = self.index.tokens(sentence)
        if words and sum(w in source.tokens for w in words) / len(words) < self.min_overlap:
            return "palabras ajenas al pasaje"
        if not len(source.matrix) or float(similarity.max()) < self.min_similarity:
            return "no se parece a ninguna frase del pasaje"
        # What the sentence is about must be in the passage it resembles most: "El decodificador es una
        # técnica que se utiliza para modelar las oraciones" resembled a sentence of a chunk on pruning.
        anchor = source.anchors[int(similarity.argmax())] if source.anchors else None
        if anchor and (missing := [w for w in subject(sentence) if not anchor.names(w)]):
            return f"su sujeto ({' '.join(missing)}) no está en el pasaje al que se parece"
        return None


@dataclass(frozen=True)
class _Source:
    """What a reply is checked against: the question and passages' text, folded and as stems, and the
    passage sentences' vectors with, for a Spanish reply, the words of the chunk each comes from."""

    text: str
    folded: str
    tokens: set[str]
    matrix: np.ndarray
    anchors: Sequence[Vocabulary]


def _ngrams(words: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def _is_loop(text: str) -> bool:
    """The same 4 words three times or more, or a long text made of few distinct 4-grams."""
    grams = _ngrams(fold(text).split(), 4)
    if not grams:
        return False
    counts = Counter(grams)
    return counts.most_common(1)[0][1] >= 3 or (len(grams) >= 20 and len(counts) / len(grams) < 0.6)


def _instruction_grams(prompt: str, passages: Sequence[Passage], question: str) -> set[tuple[str, ...]]:
    """The 5-grams of the prompt's own instructions (the prompt without the course text and the question)."""
    instructions = fold(prompt)
    for part in [question, *(p.chunk.text for p in passages)]:
        instructions = instructions.replace(fold(part), " ")
    return set(_ngrams(instructions.split(), 5))


def _is_echo(text: str, prompt: str, passages: Sequence[Passage], question: str) -> bool:
    """A reply that repeats the prompt's own instructions (not the course text it was given)."""
    own = _instruction_grams(prompt, passages, question)
    grams = _ngrams(fold(text).split(), 5)
    return bool(grams) and sum(g in own for g in grams) / len(grams) > 0.3
