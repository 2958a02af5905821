"""The meaning check: does a generated sentence say what the course passages say?

The lexical rules of verify.py each look at one thing (similarity, shared words, names, numbers, the
subject) and a sentence passes when it clears every bar. On labelled sentences (eval/claims.jsonl) the
bars alone let through as many inventions as they stop correct paraphrases. Here the same measurements,
and a few that look for meaning flipped in the course's own words (a negation the passage does not
have, "alta" where the passage says "baja", a model name the passage sentence does not mention), are
weighed by a logistic regression fitted on the claims set's tuning part. A student must never read an
invention as the course, and a sentence the check drops leaves the course's own sentences on screen,
so its threshold is the lowest whose cross-validated tuning predictions show sentences that are at
least PRECISION supported (issue 18's target), whatever that costs in recall. A number or a name the
passages do not have drops a sentence whatever its score ("GPT-3 tiene 10 parámetros"). Where the
model gave its tokens' entropies (llama.cpp does, engine.py), a second model weighs them too: how
unsure the writer was of the sentence (TOKEN_FEATURES; docs/verifier.md).

Input: an Evidence per sentence (what the verifier measured against the passages). Output: a score in
[0, 1], the model's probability that the sentence is supported. A model belongs to the embedder whose
similarities it was fitted on; for another embedder there is none and the verifier stays lexical.
meaning_fit.py fits it (`tutor verifier train`).

    >>> Evidence("La perplejidad alta es mejor.", ("Un valor más bajo sugiere un mejor rendimiento.",),
    ...          (0.9,), 0.8, "Un valor más bajo sugiere un mejor rendimiento.", "es", None, 0, 1).flips()
    (False, True)
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from tutor.text import fold, stems, subject, words, write_atomic

DATA_DIR = Path(__file__).resolve().parent / "meaning_data"
FORMAT = 1
PRECISION = 0.97  # of the sentences shown as the course's, the share it must really say (issue 18)

FEATURES = (
    "similarity",  # cosine with the most similar passage sentence
    "similarity_gap",  # best minus third best: one clear source, or many vague ones
    "question_similarity",
    "words_in_passages",  # share of the sentence's stems found in the passages or the question
    "words_in_best",  # ... in the most similar passage sentence
    "words_in_best3",  # ... in the three most similar
    "best_covered",  # share of the most similar passage sentence's stems the sentence repeats
    "number_missing",
    "name_missing",  # a name or acronym absent from the passages
    "name_not_in_best",  # ... absent from the three most similar passage sentences
    "negation_flipped",
    "opposite_word",  # "alta" where the passage sentence says "baja"
    "subject_missing",  # share of the subject's words absent from the passages (Spanish replies)
    "log_words",
    "foreign_reply",  # the reply is not in the course's language: no shared words to expect
    "lexical_pass",  # the lexical rules kept it
    "position",  # 0 for the first sentence, 1 for the last
)
# With the writer's own uncertainty: the mean entropy of the sentence's tokens as the model drew them
# (engine.py records it; a model behind a server gives none, and FEATURES alone decide there).
TOKEN_FEATURES = (*FEATURES, "entropy_mean")
_NEGATIONS = frozenset("no nunca sin ni jamas not never without nao nem ne pas non nicht kein keine".split())
_OPPOSITES = (
    ("alto", "bajo"), ("mas", "menos"), ("mayor", "menor"), ("mejor", "peor"), ("aumenta", "disminuye"),
    ("aumentar", "reducir"), ("grande", "pequeno"), ("facil", "dificil"), ("rapido", "lento"),
    ("simple", "complejo"), ("antes", "despues"), ("higher", "lower"), ("more", "less"), ("better", "worse"),
)  # fmt: skip


def _forms(word: str) -> frozenset[str]:
    """A folded word in both genders and numbers: "alto" is also "alta", "altos", "altas"."""
    forms = {word, f"{word}s", f"{word}es"}
    if word.endswith("o"):
        forms |= {f"{word[:-1]}a", f"{word[:-1]}os", f"{word[:-1]}as"}
    return frozenset(forms)


_OPPOSITE_FORMS = tuple((_forms(a), _forms(b)) for a, b in _OPPOSITES)
# The models the course compares, by the name a sentence gives them ("GANs" is GAN, "GPT-3" is GPT).
_MODELS = frozenset("bert roberta gpt t5 word2vec glove lstm rnn gan vae".split())


def opposite(sentence: str, passage_sentence: str) -> str | None:
    """A word of the sentence whose opposite the passage sentence says instead ("alta" where it says
    "bajo"), or None.

    >>> opposite("La perplejidad alta es mejor.", "Un valor más bajo sugiere un mejor rendimiento.")
    'alta'
    """
    mine, theirs = set(words(sentence)), set(words(passage_sentence))
    for a, b in _OPPOSITE_FORMS:
        for said, other in ((a, b), (b, a)):
            if (hit := mine & said) and not theirs & said and theirs & other:
                return sorted(hit)[0]
    return None


def models_named(text: str) -> set[str]:
    """The course's models a text names (see _MODELS), by their base name."""
    out = set()
    for token in re.findall(r"[\w-]+", fold(text)):
        base = re.sub(r"-?\d+$", "", token) if token.startswith("gpt") else token
        base = base[:-1] if base.endswith("s") and base[:-1] in _MODELS else base
        if base in _MODELS:
            out.add(base)
    return out


def contradiction(sentence: str, passage_sentence: str) -> str | None:
    """Why the sentence contradicts the passage sentence it most resembles, in the course's own words,
    or None: a word whose opposite it says, or a model given what it says of another one.
    Of the 480 labelled claims of eval/claims.jsonl (e5), these catch 8 unsupported sentences (4 in each
    part) and no supported one.

    >>> contradiction("BERT utiliza una estrategia de enmascaramiento dinámico.",
    ...               "RoBERTa usa una estrategia de enmascaramiento dinámico.")
    'atribuye a bert lo que el curso dice de roberta'
    """
    if (word := opposite(sentence, passage_sentence)) is not None:
        return f"dice «{word}» donde el curso dice lo contrario"
    mine, theirs = models_named(sentence), models_named(passage_sentence)
    if mine and theirs and not mine & theirs:
        return f"atribuye a {'/'.join(sorted(mine))} lo que el curso dice de {'/'.join(sorted(theirs))}"
    return None


_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_LIST_MARKER = re.compile(r"^\s*(?:[-*•]\s*)?\(?\d{1,2}[.)](?=\s)")  # "1. ", "- 2) ", "(3) " opening an item
# Acronyms and model names (BERT, GPT-3, T5, RoBERTa) and capitalised words inside a sentence.
NAME = re.compile(r"\b[A-ZÁÉÍÓÚÑ][\w-]*[A-Z0-9][\w-]*\b|(?<=[a-záéíóúñ,;:] )[A-ZÁÉÍÓÚÑ][a-záéíóúñ]+\b")


def missing_number(sentence: str, source: str) -> str | None:
    """The first number of the sentence the source does not have ("10" is not in "2010"), or None. A list
    item's own number ("2. **Entrenamiento Equilibrado**: …") numbers the reply, not the course.

    >>> missing_number("2. **Preentrenamiento**: en 3 fases.", "se entrena en 3 fases"), missing_number(
    ...     "2. Tiene 10 capas.", "tiene 12 capas")
    (None, '10')
    """
    for number in _NUMBER.findall(_LIST_MARKER.sub("", sentence, count=1)):
        if not re.search(rf"(?<![\d.,]){re.escape(number)}(?![\d]|[.,]\d)", source):
            return number
    return None


def missing_name(sentence: str, source_folded: str) -> str | None:
    """The first name or acronym of the sentence absent from the (folded) source, or None; an acronym's
    plural ("TPUs", "LLMs") is named where its singular is.

    >>> missing_name("Las TPUs aceleran el entrenamiento.", fold("la TPU de Google")), missing_name(
    ...     "Las GPUs aceleran el entrenamiento.", fold("la CPU"))
    (None, 'GPUs')
    """

    def named(name: str) -> bool:
        folded = fold(name)
        plural = bool(re.fullmatch(r"[A-Z0-9]{2,}s", name)) and folded[:-1] in source_folded
        return folded in source_folded or plural

    return next((name for name in NAME.findall(sentence) if not named(name)), None)


@dataclass(frozen=True)
class Evidence:
    """What the verifier measured for one sentence of a reply."""

    sentence: str
    best: tuple[str, ...]  # the most similar passage sentences, best first (up to three)
    similarities: tuple[float, ...]  # their cosines with the sentence
    question_similarity: float
    source: str  # the passages' text and the question
    language: str  # the reply's language
    lexical_reason: str | None  # why the lexical rules would drop it; None if they keep it
    position: int
    count: int  # sentences in the reply
    invented: str | None = None  # a number or name the passages lack, a contradiction, the instructions: dropped
    entropy_mean: float | None = None  # nats, over the sentence's tokens as generated; None when unknown

    def flips(self) -> tuple[bool, bool]:
        """(a negation the best passage sentence lacks or has alone, a word whose opposite it says)."""
        best = self.best[0] if self.best else ""
        mine, theirs = words(self.sentence), words(best)
        negation = sum(w in _NEGATIONS for w in mine) % 2 != sum(w in _NEGATIONS for w in theirs) % 2
        return negation, opposite(self.sentence, best) is not None

    def vector(self, features: Sequence[str] = FEATURES) -> list[float]:
        """The features, in the order of FEATURES (then entropy_mean, when `features` is TOKEN_FEATURES)."""
        own = stems(self.sentence)
        source, best = set(stems(self.source)), set(stems(self.best[0])) if self.best else set()
        best3 = set(stems(" ".join(self.best)))
        sims = [*self.similarities, 0.0, 0.0, 0.0]
        source_folded, best_folded = fold(self.source), fold(" ".join(self.best))
        topic = subject(self.sentence) if self.language == "es" else []
        negation, opposite = self.flips()
        return [
            sims[0], sims[0] - sims[2], self.question_similarity,
            _share(own, source), _share(own, best), _share(own, best3),
            len(best & set(own)) / len(best) if best else 0.0,
            float(missing_number(self.sentence, self.source) is not None),
            float(missing_name(self.sentence, source_folded) is not None),
            float(missing_name(self.sentence, best_folded) is not None),
            float(negation), float(opposite),
            sum(w not in source_folded for w in topic) / len(topic) if topic else 0.0,
            math.log(max(1, len(self.sentence.split()))), float(self.language != "es"),
            float(self.lexical_reason is None), self.position / max(1, self.count - 1),
            *([self.entropy_mean or 0.0] if len(features) > len(FEATURES) else []),
        ]  # fmt: skip


def _share(words: Sequence[str], known: set[str]) -> float:
    return sum(w in known for w in words) / len(words) if words else 0.0


@dataclass
class MeaningModel:
    """A standardised logistic regression over FEATURES (or TOKEN_FEATURES), and the score a sentence
    needs to be kept."""

    embedder: str
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    threshold: float
    features: tuple[str, ...] = FEATURES
    meta: dict[str, Any] = field(default_factory=dict)  # data hash, cross-validated figures
    thresholds: dict[str, float] = field(default_factory=dict)  # a writer's own (catalogue name -> threshold)

    def threshold_for(self, writer: str | None) -> float:
        """The score a sentence by this writer needs: its own threshold where it has one, else the pooled."""
        return self.thresholds.get(writer or "", self.threshold)

    @property
    def tokens(self) -> bool:
        """Fitted with the writer's entropy: only for sentences whose Evidence has it."""
        return self.features == TOKEN_FEATURES

    def score(self, evidence: Evidence) -> float:
        z = (np.asarray(evidence.vector(self.features)) - self.mean) / self.scale
        return float(1.0 / (1.0 + math.exp(-(float(z @ self.coef) + self.intercept))))

    def for_precision(self, precision: float) -> MeaningModel:
        """The same model with the threshold its saved cross-validated curve gives for `precision`, by
        fit's rule and without refitting (TUTOR_VERIFIER_PRECISION); itself when it saved no curve."""
        figures = self.meta.get("cross_validation") or {}

        def chosen(saved: dict[str, Any] | None, default: float) -> float:
            curve = sorted((float(threshold), got) for threshold, got in (saved or {}).items())
            return choose_threshold(curve, precision)[0] if curve else default

        by_writer = figures.get("by_writer") or {}
        writers = {w: chosen(by_writer.get(w, {}).get("curve"), t) for w, t in self.thresholds.items()}
        return replace(self, threshold=chosen(figures.get("curve"), self.threshold), thresholds=writers)

    def save(self, path: Path) -> None:
        data = {
            "format": FORMAT, "embedder": self.embedder, "features": list(self.features), "mean": self.mean.tolist(),
            "scale": self.scale.tolist(), "coef": self.coef.tolist(), "intercept": self.intercept,
            "threshold": self.threshold, "thresholds": self.thresholds, **self.meta,
        }  # fmt: skip
        write_atomic(path, json.dumps(data, ensure_ascii=False, indent=1) + "\n")

    @classmethod
    def load(cls, path: Path) -> MeaningModel | None:
        """The model in `path`, or None when there is none or it was made for other features."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        features = tuple(data.get("features") or ())
        if data.get("format") != FORMAT or features not in (FEATURES, TOKEN_FEATURES):
            return None
        known = {"format", "embedder", "features", "mean", "scale", "coef", "intercept", "threshold", "thresholds"}
        return cls(
            data["embedder"], np.asarray(data["mean"]), np.asarray(data["scale"]), np.asarray(data["coef"]),
            float(data["intercept"]), float(data["threshold"]), features,
            {k: v for k, v in data.items() if k not in known},
            {str(w): float(t) for w, t in (data.get("thresholds") or {}).items()},
        )  # fmt: skip


def model_path(embedder_name: str, folder: Path = DATA_DIR, *, tokens: bool = False) -> Path:
    """Where the meaning model fitted on this embedder's similarities lives (`tokens`: the one that also
    weighs the writer's entropy, "<embedder>+tokens.json")."""
    return folder / (re.sub(r"[^\w.-]+", "-", embedder_name).strip("-") + ("+tokens" if tokens else "") + ".json")


def load_for(embedder_name: str, folder: Path = DATA_DIR, *, tokens: bool = False) -> MeaningModel | None:
    model = MeaningModel.load(model_path(embedder_name, folder, tokens=tokens))
    if model is None or model.embedder != embedder_name or model.tokens != tokens:
        return None
    return model


def span_means(
    text: str,
    spans: Sequence[tuple[int, int]],
    values: Sequence[float],
    sentences: Sequence[str],
    *,
    reduce: Callable[[list[float]], Any] = np.mean,
) -> list[float | None]:
    """For each sentence, the mean (or `reduce`) of the values whose character span of `text` it overlaps
    (None when it overlaps none, or is not in the text). Sentences are looked for in order, whitespace
    runs as one space (text.sentences writes them so).

    >>> span_means("Uno  dos. Tres.", [(0, 4), (4, 9), (9, 15)], [1.0, 3.0, 5.0], ["Uno dos.", "Tres."])
    [2.0, 5.0]
    """
    # The text with whitespace runs as one space, and where each of its characters came from.
    flat: list[str] = []
    origin: list[int] = []
    for at, char in enumerate(text):
        if char.isspace():
            if flat and flat[-1] == " ":
                continue
            char = " "
        flat.append(char)
        origin.append(at)
    flat_text, origin = "".join(flat), [*origin, len(text)]
    out: list[float | None] = []
    start = 0
    for sentence in sentences:
        found = flat_text.find(sentence, start)
        found = flat_text.find(sentence) if found < 0 else found
        if found < 0:
            out.append(None)
            continue
        begin, end = origin[found], origin[found + len(sentence) - 1] + 1
        mine = [v for (a, b), v in zip(spans, values) if a < end and b > begin]
        out.append(float(reduce(mine)) if mine else None)
        start = found + len(sentence)
    return out


def piece_entropies(pieces: Sequence[str]) -> Callable[[Sequence[str]], list[float | None]] | None:
    """Each sentence's mean token entropy, from a reply's streamed pieces (tutor.types.Piece); None when
    the model gave no entropies. A piece's tokens all get its span."""
    spans, values, at = [], [], 0
    for piece in pieces:
        for value in getattr(piece, "entropies", ()):
            spans.append((at, at + len(piece)))
            values.append(value)
        at += len(piece)
    if not values:
        return None
    text = "".join(pieces)
    return lambda sentences: span_means(text, spans, values, sentences)


def choose_threshold(
    curve: Sequence[tuple[float, dict[str, float]]], precision: float
) -> tuple[float, dict[str, float]]:
    """From (threshold, figures) points in rising order: the lowest threshold whose shown sentences are at
    least `precision` supported, else the most precise one (then the one with more recall)."""
    reaching = [point for point in curve if point[1]["precision"] >= precision]
    return reaching[0] if reaching else max(curve, key=lambda p: (p[1]["precision"], p[1]["recall"]))
