"""The text layer: the small helpers several stages need, each defined once, with a worked example.

Accent folding, words, sentences, Spanish stems (the tokens BM25, the verifier and the grader see),
singular/plural forms, the `Vocabulary` of a course text, the Spanish verb lists, cognate keys, the
"I give up" phrases, front matter, and atomic file writes. It knows nothing about the index, the
model or the pipeline, and keeps no state but the stemmer it builds on first use.
"""

from __future__ import annotations

import functools
import os
import re
import tempfile
import unicodedata
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from tutor.types import Chunk

# --- folding and words -----------------------------------------------------------------------------


def fold(text: str) -> str:
    """Lowercase without accents: students often type 'atencion' for 'atención'.

    >>> fold("Atención Múltiple")
    'atencion multiple'
    """
    return "".join(c for c in unicodedata.normalize("NFKD", text.lower()) if not unicodedata.combining(c))


def words(text: str) -> list[str]:
    """The folded words of a text, punctuation dropped.

    >>> words("¿Qué es el Beam Search?")
    ['que', 'es', 'el', 'beam', 'search']
    """
    return re.findall(r"\w+", fold(text))


def plural_forms(word: str) -> set[str]:
    """A folded word with its Spanish/English singular and plural spellings, to match either.

    >>> sorted(plural_forms("LLMs"))
    ['llm', 'llms', 'llmses', 'llmss']
    """
    w = fold(word)
    return {w, f"{w}s", f"{w}es", w[:-1] if w.endswith("s") else w, w[:-2] if w.endswith("es") else w}


# --- sentences ---------------------------------------------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+(?=[¿¡\"'(«A-ZÁÉÍÓÚÑ0-9])")


def sentences(text: str, *, max_words: int = 120) -> list[str]:
    """Lines split into sentences; a list number stays with its text, an overlong sentence is cut.

    >>> sentences("BERT lee en ambos sentidos. GPT predice la siguiente.\\n1. Preentrenamiento.")
    ['BERT lee en ambos sentidos.', 'GPT predice la siguiente.', '1. Preentrenamiento.']
    """
    units: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        parts = _SENTENCE_END.split(line)
        for i in range(len(parts) - 1, 0, -1):  # "1. Entrenamiento…": a list number is no sentence
            if re.fullmatch(r"[-*]?\s*\d{1,2}[.)]", parts[i - 1]):
                parts[i - 1 : i + 1] = [f"{parts[i - 1]} {parts[i]}"]
        for sentence in parts:
            tokens = sentence.split()
            for start in range(0, len(tokens), max_words):
                units.append(" ".join(tokens[start : start + max_words]))
    return units


# --- Spanish stems and stopwords ---------------------------------------------------------------------


@functools.cache
def stopwords() -> frozenset[str]:
    """bm25s's Spanish stopwords, folded.

    >>> {"de", "que", "atencion"} & stopwords() == {"de", "que"}
    True
    """
    from bm25s.stopwords import STOPWORDS_SPANISH

    return frozenset(fold(w) for w in STOPWORDS_SPANISH)


@functools.cache
def _stemmer() -> Any:
    import Stemmer

    return Stemmer.Stemmer("spanish")


def stems(text: str) -> list[str]:
    """The stemmed, accent-folded content words (stopwords and single letters out): what BM25 indexes,
    and what the verifier, the grader and the question bank compare.

    >>> stems("Los modelos de atención")
    ['model', 'atencion']
    """
    kept = [w for w in words(text) if w not in stopwords() and (len(w) > 1 or w.isdigit())]
    return [str(s) for s in _stemmer().stemWords(kept)]


class Vocabulary:
    """The words some course text uses (titles and text, folded), to tell what it never names.

    With `stemmed=True` a word also counts in any form the Spanish stemmer folds together: "podar" is
    named by a text that says "poda".

    >>> chunk = Chunk("c", "curso.md", "3.3", "BERT", 0, "Los LLMs usan la poda.", "h")
    >>> vocabulary = Vocabulary([chunk], stemmed=True)
    >>> vocabulary.names("LLM"), vocabulary.names("podar"), vocabulary.names("RLHF")
    (True, True, False)
    """

    # The course's terms under the name a student may use instead (it says NLP, students write PLN).
    ALIASES = {"pln": "nlp"}

    def __init__(self, chunks: Iterable[Chunk], *, stemmed: bool = False) -> None:
        chunks = list(chunks)
        texts = [fold(f"{c.section_title} {c.text}") for c in chunks]
        self._sections: dict[str, set[str]] = {}  # folded word -> the sections that use it
        for chunk, text in zip(chunks, texts):
            for word in re.findall(r"\w+", text):
                self._sections.setdefault(word, set()).add(chunk.section_id)
        self.words = set(self._sections)
        self._tokens: Callable[[str], list[str]] | None = stems if stemmed else None
        self._stems = set(stems(" ".join(texts))) if stemmed else set()

    def names(self, word: str) -> bool:
        """Whether the text uses the word, in the singular or the plural ("LLM" is known from "LLMs")."""
        forms = plural_forms(self.ALIASES.get(fold(word), fold(word)))
        if forms & self.words:
            return True
        # A stopword has no stem: it is nobody's term, so it counts as named.
        return self._tokens is not None and any(set(self._tokens(f)) <= self._stems for f in forms)

    def sections(self, word: str) -> set[str]:
        """The sections whose text uses the word exactly as written (folded): "SGD" -> {"4.5.2"}."""
        return self._sections.get(fold(word), set())


# --- Spanish verbs -------------------------------------------------------------------------------------

# Where a sentence's subject ends ("El beam search | es", "Los jailbreaks | se utilizan"), folded; the
# verifier looks for them among a sentence's first words only.
SUBJECT_VERBS = frozenset(
    "es son era eran fue fueron sera seria se consiste consisten significa significan permite permiten sirve "
    "sirven funciona funcionan".split()
)
# The finite verbs the course states its facts with: the verb a true/false statement negates.
STATEMENT_VERBS = (
    "es son fue fueron era eran permite permiten utiliza utilizan usa usan combina combinan predice predicen "
    "elimina eliminan mejora mejoran requiere requieren reduce reducen genera generan modela modelan tiene "
    "tienen puede pueden basa basan centra centran enfoca enfocan refiere consiste consisten implica implican "
    "incluye incluyen captura capturan representa representan mide convierte unifica aprende aprenden busca "
    "buscan ayuda ayudan ofrece ofrecen clasifica distribuye penaliza introduce agrupa acelera aceleran "
    "comprime toma marcaron revolucionó abandonó procesan procesa calcula evalúa compara mantiene mantienen "
    "demostrado presentan presenta necesita necesitan controlan controla mide limita apaga utilizó suele "
    "deben debe surgen reflejan tienden plantea plantean ocurre depende dependen sirve sirven permitió "
    "escalaban tenían podían consistían eran logra produce producen"
).split()


def subject(sentence: str, *, within: int = 6) -> list[str]:
    """The folded words before the sentence's verb, if it comes among its first `within` words; [] when
    none does. Numbers are left out ("2. El underfitting").

    >>> subject("El beam search es un método de búsqueda.")
    ['el', 'beam', 'search']
    """
    found = words(sentence)
    verb = next((i for i, w in enumerate(found[:within]) if w in SUBJECT_VERBS), 0)
    return [w for w in found[:verb] if not w.isdigit()]


# --- cognates ------------------------------------------------------------------------------------------


def cognate(word: str) -> str:
    """A rough spelling key shared by Spanish and English cognates: bidireccional ~ bidirectional.

    >>> cognate("bidireccional") == cognate("bidirectional") == "bidir"
    True
    """
    w = fold(word)
    for a, b in (("ph", "f"), ("th", "t"), ("ss", "s"), ("y", "i"), ("k", "c"), ("cc", "c"), ("qu", "c")):
        w = w.replace(a, b)
    return w[:5] if len(w) >= 5 else w


def cognates(text: str) -> set[str]:
    """The cognate keys of a text's words of five letters or more.

    >>> sorted(cognates("El modelo bidireccional"))
    ['bidir', 'model']
    """
    return {cognate(w) for w in re.findall(r"\w+", text) if len(w) >= 5}


# --- giving up ------------------------------------------------------------------------------------------

_DONT_KNOW = r"no\s+(?:lo\s+)?s[eé]|i\s+don'?t\s+know"
# Anywhere in a Socratic reply: the student wants the answer now.
ASKS_FOR_ANSWER = re.compile(
    rf"\b(?:dame la respuesta|{_DONT_KNOW}|me rindo|give me the answer|i give up|"
    r"d[oó]nam la resposta|dimmi la risposta|donne-moi la r[ée]ponse|sag mir die antwort)\b",
    re.IGNORECASE,
)
# The whole of a practice answer: nothing to grade.
NO_ANSWER = re.compile(
    rf"^\s*(?:{_DONT_KNOW}|ni idea|paso|no idea|dunno|pass|skip|n/?a|\?+|-+|"
    r"je ne sais pas|non lo so|ich wei(?:ß|ss) (?:es )?nicht|n[aã]o sei|no ho s[eé])\s*[.!?]*\s*$",
    re.IGNORECASE,
)


def gives_up(answer: str) -> bool:
    """Whether a practice answer is only "I don't know" (in any of the tutor's languages) or empty.

    >>> gives_up("No lo sé."), gives_up("ni idea"), gives_up("No sé si es BERT")
    (True, True, False)
    """
    return not answer.strip() or NO_ANSWER.match(answer) is not None


# --- files ----------------------------------------------------------------------------------------------

_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)\n---[ \t]*(?:\n|\Z)", re.DOTALL)


def split_front_matter(text: str) -> tuple[str | None, str]:
    """(the YAML between a leading pair of `---` lines, or None; the text after it).

    >>> split_front_matter("---\\ntitle: Curso\\n---\\n# 1. Intro")
    ('title: Curso', '# 1. Intro')
    """
    match = _FRONT_MATTER.match(text)
    return (match.group(1), text[match.end() :]) if match else (None, text)


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write a file whole or not at all: readers see the old content or the new, never half of it,
    even after a crash (the data reaches the disk before the rename). A `str` is written as UTF-8.

    The temporary file is hidden and ends in .tmp, so neither the prompt library nor ingestion reads it.

    >>> import tempfile; folder = Path(tempfile.mkdtemp())
    >>> write_atomic(folder / "bank.json", '{"format": 3}')
    >>> (folder / "bank.json").read_text(), [p.name for p in folder.iterdir()]
    ('{"format": 3}', ['bank.json'])
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
