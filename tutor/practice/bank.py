"""The question bank: practice items derived from the course text by rules, without any language model.

From every section of the index it makes definitions ("Define «RAG»", for the terms the section
defines), cloze items (a key sentence with a key term blanked), multiple choice (which sibling
section's subject a sentence describes: BERT / T5 / RoBERTa), true/false (a course sentence or its
negation) and "compare A and B" where the course contrasts two things. Each item keeps its section,
the course sentence(s) that answer it and the key terms a good answer contains. The bank is a JSON
file in the data folder, rebuilt per section when that section's text changes; instructors add,
edit or disable items in `knowledge/quiz.yaml`. It does not grade answers (grade.py) nor choose the
next question (the session in practice/__init__.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from tutor.errors import TutorError
from tutor.index import Index
from tutor.text import STATEMENT_VERBS, cognate, cognates, fold, write_atomic

log = logging.getLogger(__name__)

GENERATOR = 3  # bump when the rules change: every section's items are regenerated
BANK_FILE = "quiz_bank.json"
OVERRIDES_FILE = "quiz.yaml"  # in the knowledge folder: instructors' additions, edits and removals
TYPES = ("definition", "cloze", "mc", "tf", "compare", "open")
BLANK = "_____"

# Labels that introduce a statement in the course ("Definición: …"), not terms that are defined.
_GENERIC = set(
    "definicion descripcion objetivo ejemplo ejemplos ventaja ventajas desventajas aplicaciones aplicacion "
    "caracteristicas caracteristicas-clave limitaciones sintomas causas soluciones resultados introduccion "
    "estructura importancia funcionamiento nota uso usos modelos-utilizados ejemplos-de-aplicacion beneficios "
    "riesgos tipos metodos tecnicas proceso estrategias perspectiva llms aunque mientras esto este esta estos "
    "estas cuando".split()
)
_VERBS = "|".join(STATEMENT_VERBS)
_VERB = re.compile(rf"(?<![\w-])((?:(?:se|le|les|lo|la|los|las)\s+)?)({_VERBS})(?![\w-])", re.IGNORECASE)
_NEGATION = re.compile(r"(?<![\w-])(no|ni|nunca|tampoco|jamás|nada)(?![\w-])", re.IGNORECASE)
_LABEL = re.compile(r"^(?:[-*•]\s*)?(?:\d{1,2}[.)]\s*)?([^:]{2,70}?):\s*(.*)$")
_BULLET = re.compile(r"^(?:[-*•]\s*)?(?:\d{1,2}[.)]\s*)?")
_WORD = re.compile(r"\[?[\wÀ-ÿ][\wÀ-ÿ'’./+-]*\]?")
_COPULA = re.compile(
    r"^(?:(?:el|la|los|las|un|una)\s+)?(.{2,60}?)\s+(?:es|son|se refiere a|se refieren a|consiste en|implica)\s+"
    r"(?:un|una|el|la|los|las|que|la práctica|el proceso|cualquier|una técnica)\b",
    re.IGNORECASE,
)
_CONTRAST = re.compile(r"\b(?:a diferencia de|en contraste con|en comparación con|en lugar de)\s+([^,]{2,60}),", re.I)


@dataclass(frozen=True)
class Item:
    """One practice question: where it comes from, what answers it, and how it is asked."""

    id: str  # stable: "<section>:<type>:<hash of question and reference>"
    section: str
    title: str
    type: str  # definition | cloze | mc | tf | compare | open
    question: str  # the question in Spanish, as the course would ask it (the CLI and the bank show it)
    reference: str  # the course sentence(s) that answer it
    key_terms: tuple[str, ...] = ()  # what a complete free-text answer mentions (course words)
    subject: str = ""  # definition: the term; cloze: the sentence with a blank; mc/tf: the statement;
    # compare: "A | B"; open: unused
    options: tuple[str, ...] = ()  # mc only
    answer: str = ""  # mc: the correct option; tf: "true" | "false"; cloze: the blanked word
    source: str = "rules"  # rules | instructor

    @property
    def free_text(self) -> bool:
        return self.type in ("definition", "compare", "open")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Item:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        for key in ("key_terms", "options"):
            known[key] = tuple(str(x) for x in known.get(key) or ())
        return cls(**known)


@dataclass
class Bank:
    """Every item, by section in course order; `titles` names each section."""

    items: list[Item]
    titles: dict[str, str]
    order: list[str]  # section ids in course order
    stats: dict[str, Any] = field(default_factory=dict)  # sections built / reused, seconds, overrides applied
    problems: list[str] = field(default_factory=list)

    def by_id(self, item_id: str) -> Item | None:
        return next((i for i in self.items if i.id == item_id), None)

    def of_section(self, section: str, *, with_children: bool = False) -> list[Item]:
        prefix = section + "."
        return [i for i in self.items if i.section == section or (with_children and i.section.startswith(prefix))]

    def counts(self) -> dict[str, int]:
        counter = Counter(i.type for i in self.items)
        return {t: counter[t] for t in TYPES if counter[t]}


# --- the course's sections, read back from the index ---------------------------------------------


@dataclass(frozen=True)
class _Section:
    id: str
    title: str
    units: tuple[str, ...]  # lines and sentences in course order (chunk overlaps removed)
    vector: np.ndarray  # mean of its chunk vectors

    @property
    def words(self) -> int:
        return sum(len(u.split()) for u in self.units if not u.rstrip().endswith(":"))


def course_sections(index: Index) -> list[_Section]:
    """The index's sections with their sentences, in course order."""
    chunks, vectors = index.chunk_vectors()
    units: dict[str, list[str]] = defaultdict(list)
    vecs: dict[str, list[np.ndarray]] = defaultdict(list)
    titles: dict[str, str] = {}
    for chunk, vec in zip(chunks, vectors):
        titles.setdefault(chunk.section_id, chunk.section_title)
        seen = set(units[chunk.section_id])
        for line in chunk.text.splitlines():
            if line.strip() and line not in seen and not line.lstrip().startswith(">"):
                units[chunk.section_id].append(line.strip())
                seen.add(line)
        vecs[chunk.section_id].append(vec)
    out = []
    for sid, title in titles.items():
        mean = np.mean(vecs[sid], axis=0)
        out.append(_Section(sid, title, tuple(units[sid]), mean / (np.linalg.norm(mean) or 1.0)))
    return out


def substantive(section: _Section) -> bool:
    """A section with enough text of its own to ask about: two sentences and 30 words at least.

    A chapter's one-sentence aim ("El objetivo en este tema es…") is not; it still gets what it can.
    """
    sentences = [u for u in section.units if len(u.split()) >= 6 and not u.rstrip().endswith(":")]
    return section.words >= 30 and len(sentences) >= 2


# --- building ------------------------------------------------------------------------------------


class _KeyTerms:
    """Stems, document frequencies over sections, and which words are names: for key terms and blanks."""

    def __init__(self, index: Index, sections: Sequence[_Section]) -> None:
        self.index = index
        self.df: Counter[str] = Counter()
        for s in sections:
            self.df.update(set(index.tokens(" ".join(s.units) + " " + s.title)))
        self.n = max(1, len(sections))

    def stems(self, text: str) -> set[str]:
        return set(self.index.tokens(text))

    def idf(self, stem: str) -> float:
        return math.log((self.n + 1) / (self.df.get(stem, 0) + 1))

    def candidates(self, text: str, exclude: str = "", context: str = "") -> list[tuple[float, str]]:
        """(weight, word) for the content words of a text, best first; words of `exclude` left out.

        Rare words (across sections) weigh more, names and acronyms more still, and words the section
        repeats (`context`) a little more; adverbs, infinitives and gerunds weigh less: a blank or a key
        term should be a thing, not a manner.
        """
        banned = self.stems(exclude) | cognates(exclude)
        repeated = Counter(self.index.tokens(context))
        seen: set[str] = set()
        out = []
        for n, match in enumerate(_WORD.finditer(text)):
            word = match.group(0).strip(".,;:()«»\"'’").rstrip(".")
            stems = self.index.tokens(word)
            if not stems or len(word) < 3 or (len(stems) > 1 and not _is_name(word)):
                continue
            stem = stems[0]
            if stem in banned or stem in seen or cognate(word) in banned or word.lower() in _WEAK:
                continue
            seen.add(stem)
            opening = n == 0 or text[: match.start()].rstrip().endswith((":", ".", "¿", "¡", '"'))
            name = _is_name(word) and not (opening and word[1:].islower())
            if word[:1].isupper() and not name:
                continue  # a capitalised first word ("Algoritmo desarrollado…") is no name
            weight = self.idf(stem) + (0.8 if name else 0.0) + min(len(word), 12) / 24
            weight += 0.25 * min(repeated[stem] - 1, 2) if repeated[stem] > 1 else 0.0
            low = word.lower()
            if low.endswith("mente") or re.search(r"(ar|er|ir|ando|iendo|yendo|ará|erá|irá|aron|ieron)$", low):
                weight -= 1.5
            if word.isdigit() and len(word) != 4:
                weight -= 1.0  # "2" or "32" are easy to blank but say little; a year is a fact
            out.append((weight, word))
        return sorted(out, key=lambda x: -x[0])

    def key_terms(self, reference: str, question: str, n: int = 3, context: str = "") -> tuple[str, ...]:
        picked = [w for weight, w in self.candidates(reference, exclude=question, context=context) if weight >= 1.0]
        return tuple(picked[:n])


_WEAK = set(
    "modelo modelos texto textos datos tarea tareas lenguaje lenguajes manera forma tipo tipos ejemplo "
    "diferentes diferente varios varias general generales específicas específicos permite pueden puede "
    "través durante parte partes caso casos mayor menor mejor mejores cada otro otros otras sistema "
    "sistemas aplicaciones técnica técnicas proceso capacidad utilizando utiliza cuando entre sobre "
    "también además mediante incluso luego primero bien posible visto vista gracias dada dado dados dadas "
    "cual cuales mismo misma mucho mucha muchos muchas ciertos ciertas algunas algunos varios ambos etc "
    "nuevo nueva nuevos nuevas grandes gran pequeño pequeños contraste mientras diferencia intentan veces "
    "todas todos toda todo demasiado crucial parece pide sigue entiende según esencial fundamental "
    "importante clave".split()
)


def _is_name(word: str) -> bool:
    """BERT, RoBERTa, T5, GPT-3, [CLS], Google, 2018: words that survive translation."""
    core = word.strip("[]")
    return bool(re.search(r"[A-Z].*[A-Z0-9]|^\d{4}$", core)) or (core[:1].isupper() and len(core) > 2)


def _short_name(title: str) -> str:
    """The subject a section title names: 'BERT (Bidirectional…)' -> 'BERT'; 'RoBERTa y sus…' -> 'RoBERTa'."""
    base = re.sub(r"\s*\([^)]*\)", "", title).strip()
    acronym = re.match(r"^([A-Z][\w-]*[A-Z0-9][\w-]*)\b", base)
    if acronym:
        return acronym.group(1)
    before = title.split("(")[0].strip()
    return before if len(before.split()) <= 4 else ""


def _clean(unit: str) -> str:
    return _BULLET.sub("", unit).strip()


def _sentence_ok(text: str, lo: int = 7, hi: int = 45) -> bool:
    n = len(text.split())
    return lo <= n <= hi and not text.endswith(":") and not text.startswith("Por ejemplo")


def _item_id(section: str, kind: str, question: str, reference: str) -> str:
    digest = hashlib.sha1(f"{question}\n{reference}".encode()).hexdigest()[:8]
    return f"{section}:{kind}:{digest}"


def _make(section: _Section, kind: str, question: str, reference: str, **extra: Any) -> Item:
    return Item(_item_id(section.id, kind, question, reference), section.id, section.title, kind, question,
                reference, **extra)  # fmt: skip


def negate(sentence: str) -> str | None:
    """The sentence with its main verb negated ('BERT utiliza…' -> 'BERT no utiliza…'), or None."""
    if _NEGATION.search(sentence):
        return None
    label = ""
    match = _LABEL.match(sentence)
    if match and len(match.group(1).split()) <= 6:
        label, sentence = f"{match.group(1)}: ", match.group(2)
    verb = _VERB.search(sentence)
    if verb is None or len(sentence[: verb.start()].split()) > 10:
        return None
    if verb.start() == 0 and not label:
        return None  # a subject-less fragment: "Permite…" negated reads oddly out of its list
    negated = sentence[: verb.start()] + ("No " if verb.start() == 0 else "no ") + sentence[verb.start() :]
    if verb.start() == 0:
        negated = negated[:3] + negated[3].lower() + negated[4:]
    return label + negated


_LIST_OF_EXAMPLES = re.compile(
    r"^(ejemplos?|modelos utilizados|aplicaciones|limitaciones|ventajas|desventajas|riesgos|beneficios|causas|"
    r"soluciones|sintomas|resultados|mejoras|ejemplos de aplicacion|casos de uso|desafios)",
    re.IGNORECASE,
)


def _definitions(section: _Section) -> list[tuple[str, str]]:
    """(term, definition sentence) pairs the section states."""
    pairs: list[tuple[str, str]] = []
    context = ""  # the last label line ("GPT (Generative Pre-trained Transformer):") for "Descripción: …"
    units = [_clean(u) for u in section.units]
    for n, unit in enumerate(units):
        if unit.endswith(":") and len(unit.split()) <= 8:
            context = unit[:-1].strip()
            continue
        term, definition = "", ""
        label = _LABEL.match(unit)
        if label and len(label.group(1).split()) <= 6:
            head, rest = label.group(1).strip(), label.group(2).strip()
            key = re.sub(r"\s+", "-", fold(head))
            if key in ("definicion", "descripcion") and context and not _LIST_OF_EXAMPLES.match(fold(context)):
                term, definition = context, rest
            elif key in ("definicion", "descripcion"):
                copula = _COPULA.match(rest)
                term, definition = (copula.group(1), rest) if copula else (_short_name(section.title), rest)
            elif key not in _GENERIC and not head[0].isdigit() and not _LIST_OF_EXAMPLES.match(fold(context)):
                term, definition = head, rest
        else:
            copula = _COPULA.match(unit)
            subject = copula.group(1) if copula else ""
            if subject and len(subject.split()) <= 5 and "," not in subject and fold(subject) not in _GENERIC:
                term, definition = subject, unit
        term = re.split(r",\s+o\s+|,", re.sub(r"\s*\([^)]*\)", "", term))[0].strip(" -") or term.strip()
        if not term or _VERB.search(term) or not term[:1].isalnum() or len(term.split()) > 5:
            continue
        if len(definition.split()) < 6 or not definition[:1].isalpha():
            continue
        if len(definition.split()) < 10 and n + 1 < len(units) and not units[n + 1].endswith(":"):
            nxt = units[n + 1]
            if not _LABEL.match(nxt) and len(nxt.split()) <= 30:
                definition = f"{definition} {nxt}"
        pairs.append((term, definition))
    return pairs


def _related(a: str, b: str, section: _Section) -> bool:
    """Two terms the course puts side by side: named together, or sharing a word (Podado (No) Estructural)."""
    fa, fb = fold(a), fold(b)
    shared = {w for w in re.findall(r"\w{5,}", fa)} & {w for w in re.findall(r"\w{5,}", fb)}
    together = any(fa in fold(u) and fb in fold(u) for u in (section.title, *section.units))
    return bool(shared) or together


def _comparisons(section: _Section) -> list[tuple[str, str, str]]:
    """(A, B, reference) where the section contrasts two things."""
    found: list[tuple[str, str, str]] = []
    defs = _definitions(section)
    # Two parallel definitions (Skip-Gram / CBOW, Generador / Discriminador) the course names together.
    for (a, da), (b, db) in zip(defs, defs[1:]):
        if fold(a) != fold(b) and len(a.split()) <= 4 and len(b.split()) <= 4 and _related(a, b, section):
            found.append((a, b, f"{a}: {da} {b}: {db}"))
    for unit in map(_clean, section.units):
        match = _CONTRAST.search(unit)
        if match and _sentence_ok(unit, 8, 60):
            other = re.split(r",?\s+que\s+", match.group(1))[0].strip()
            rest = unit[match.end() :]
            rest = re.sub(r"^[^,]*?\bque\b[^,]*,\s*", "", rest) if rest.lstrip().startswith("que") else rest
            subject = _VERB.split(rest.strip(), maxsplit=1)[0].strip(" ,")
            if 0 < len(subject.split()) <= 5 and 0 < len(other.split()) <= 6:
                found.append((other, subject, unit))
        if " mientras que " in unit and _sentence_ok(unit, 8, 60):
            left, right = unit.split(" mientras que ", 1)
            a = _VERB.split(_LABEL.sub(r"\2", left).strip(), maxsplit=1)[0].strip(" ,")
            b = _VERB.split(right.strip(), maxsplit=1)[0].strip(" ,")
            if 0 < len(a.split()) <= 5 and 0 < len(b.split()) <= 5:
                found.append((a, b, unit))
    return found


def _section_items(section: _Section, siblings: Sequence[_Section], vocab: _KeyTerms, central: dict[str, float],
                   vectors: dict[str, np.ndarray]) -> list[Item]:  # fmt: skip
    """Every rule-made item of one section."""
    items: list[Item] = []
    used: set[str] = set()  # reference sentences already asked about (one item type per sentence)

    context = " ".join(section.units)
    for term, definition in _definitions(section)[:4]:
        question = f"¿Qué es «{term}» según el curso?"
        keys = vocab.key_terms(definition, question + " " + term, context=context)
        if len(keys) >= 2:
            items.append(_make(section, "definition", question, definition, key_terms=keys, subject=term))
            used.add(definition)

    for a, b, reference in _comparisons(section)[:2]:
        question = f"¿En qué se diferencian «{a}» y «{b}» según el curso?"
        keys = vocab.key_terms(reference, question, n=4, context=context)
        if len(keys) >= 2:
            items.append(_make(section, "compare", question, reference, key_terms=keys, subject=f"{a} | {b}"))

    sentences = [_clean(u) for u in section.units if _sentence_ok(_clean(u))]
    sentences.sort(key=lambda s: -central.get(s, 0.0))  # the section's key sentences first

    mc = _multiple_choice(section, siblings, sentences, vectors)
    if mc is not None:
        items.append(mc)
        used.add(mc.reference)
    items += _clozes_and_statements(section, sentences, vocab, used, min_weight=1.2)
    if len(items) < 2:  # a short section: longer sentences and weaker blanks are better than nothing
        longer = [_clean(u) for u in section.units if _sentence_ok(_clean(u), 6, 80)]
        longer.sort(key=lambda s: -central.get(s, 0.0))
        items += _clozes_and_statements(section, longer, vocab, set(), min_weight=0.6)
    return list({i.id: i for i in items}.values())


def _clozes_and_statements(section: _Section, sentences: Sequence[str], vocab: _KeyTerms, used: set[str], *,
                           min_weight: float) -> list[Item]:  # fmt: skip
    """Up to two cloze items and two true/false items, each from its own sentence."""
    items: list[Item] = []
    context = " ".join(section.units)
    clozes = 0
    for sentence in sentences:
        if clozes == 2 or sentence in used:
            continue
        for weight, word in vocab.candidates(sentence, exclude=section.title, context=context):
            if weight < min_weight or len(re.findall(rf"(?<!\w){re.escape(word)}(?!\w)", sentence)) != 1:
                continue
            blanked = re.sub(rf"(?<!\w){re.escape(word)}(?!\w)", BLANK, sentence)
            if cognate(word) in cognates(blanked) or vocab.stems(word) & vocab.stems(blanked):
                continue
            question = f"Completa el hueco: «{blanked}»"
            items.append(_make(section, "cloze", question, sentence, key_terms=(word,), subject=blanked, answer=word))
            used.add(sentence)
            clozes += 1
            break

    tfs = 0
    for sentence in sentences:
        if tfs == 2 or sentence in used:
            continue
        negated = negate(sentence)
        if negated is None:
            continue
        truth = int(hashlib.sha1(sentence.encode()).hexdigest(), 16) % 2 == 0
        statement = sentence if truth else negated
        question = f"¿Verdadero o falso? «{statement}»"
        keys = vocab.key_terms(sentence, "", context=context)
        items.append(_make(section, "tf", question, sentence, key_terms=keys[:2], subject=statement,
                           answer="true" if truth else "false"))  # fmt: skip
        used.add(sentence)
        tfs += 1
    return items


def _multiple_choice(section: _Section, siblings: Sequence[_Section], sentences: Sequence[str],
                     vectors: dict[str, np.ndarray]) -> Item | None:  # fmt: skip
    """'Which of these does the course describe here?' with the sibling sections' subjects as distractors.

    A distractor is never correct: the statement names this section's subject in the course (masked
    here), names no sibling, and is closer to its own section than to any distractor's section.
    """
    own = _short_name(section.title)
    others = [(s, _short_name(s.title)) for s in siblings if s.id != section.id]
    others = [(s, name) for s, name in others if name and fold(name) != fold(own)]
    if not own or len(others) < 2:
        return None
    names = [fold(own)] + [fold(n) for _, n in others]
    for sentence in sentences:
        folded = fold(sentence)
        if fold(own) not in folded or any(n in folded for n in names[1:]):
            continue
        statement = re.sub(re.escape(own), BLANK, sentence, flags=re.IGNORECASE)
        expansion = re.search(r"\(([^)]*)\)", section.title)
        if expansion:
            statement = re.sub(re.escape(expansion.group(1)), BLANK, statement, flags=re.IGNORECASE)
        if fold(own) in fold(statement) or len(statement.replace(BLANK, "").split()) < 6:
            continue
        vec = vectors.get(statement)
        if vec is None:
            continue
        own_sim = float(vec @ section.vector)
        distractors = [(s, name) for s, name in others if float(vec @ s.vector) < own_sim - 0.01][:3]
        if len(distractors) < 2:
            continue
        options = sorted([own] + [name for _, name in distractors], key=lambda x: hashlib.sha1(x.encode()).digest())
        question = f"¿A qué se refiere el curso en «{statement}»? " + " / ".join(options)
        return _make(section, "mc", question, sentence, key_terms=(own,), subject=statement, options=tuple(options),
                     answer=own)  # fmt: skip
    return None


def _mc_statements(sections: Sequence[_Section], groups: dict[str, list[_Section]]) -> list[str]:
    """Every masked statement a multiple-choice item might use: embedded in one batch."""
    out = []
    for section in sections:
        own = _short_name(section.title)
        if not own:
            continue
        expansion = re.search(r"\(([^)]*)\)", section.title)
        for unit in section.units:
            sentence = _clean(unit)
            if _sentence_ok(sentence) and fold(own) in fold(sentence):
                statement = re.sub(re.escape(own), BLANK, sentence, flags=re.IGNORECASE)
                if expansion:
                    statement = re.sub(re.escape(expansion.group(1)), BLANK, statement, flags=re.IGNORECASE)
                out.append(statement)
    return out


def _parent(section_id: str) -> str:
    return section_id.rsplit(".", 1)[0] if re.fullmatch(r"\d+(\.\d+)+", section_id) else ""


def _section_hash(section: _Section, siblings: Sequence[_Section]) -> str:
    text = json.dumps([GENERATOR, section.title, section.units, [s.title for s in siblings]], ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def build_bank(index: Index, data_dir: Path, knowledge_dir: Path | None = None, *, rebuild: bool = False) -> Bank:
    """Load the bank from the data folder, regenerating the sections whose text changed; save it."""
    started = time.perf_counter()
    sections = course_sections(index)
    groups: dict[str, list[_Section]] = defaultdict(list)
    for s in sections:
        groups[_parent(s.id)].append(s)
    path = data_dir / BANK_FILE
    old = {} if rebuild else _read_json(path).get("sections", {})
    stored: dict[str, Any] = {}
    todo = []
    for s in sections:
        digest = _section_hash(s, groups[_parent(s.id)])
        entry = old.get(s.id)
        if isinstance(entry, dict) and entry.get("hash") == digest:
            stored[s.id] = entry
        else:
            todo.append((s, digest))
    if todo:
        vocab = _KeyTerms(index, sections)
        statements = _mc_statements([s for s, _ in todo], groups)
        texts = list(dict.fromkeys(statements))
        embedded = index.embedder.embed_passages(texts) if texts else np.zeros((0, 1))
        vectors = dict(zip(texts, embedded))
        rows = index.sentences_of([c.id for c in index.chunks.values()])
        sentence_vec = {text: vec for _, text, vec in rows}
        for s, digest in todo:
            central = {_clean(u): float(sentence_vec[u] @ s.vector) for u in s.units if u in sentence_vec}
            items = _section_items(s, groups[_parent(s.id)], vocab, central, vectors)
            stored[s.id] = {"hash": digest, "title": s.title, "items": [i.to_dict() for i in items]}
    _write_json(path, {"format": GENERATOR, "sections": stored})
    items = [Item.from_dict(d) for s in sections for d in stored[s.id]["items"]]
    bank = Bank(items, {s.id: s.title for s in sections}, [s.id for s in sections])
    bank.stats = {"built": len(todo), "reused": len(sections) - len(todo), "sections": len(sections)}
    if knowledge_dir is not None:
        apply_overrides(bank, knowledge_dir / OVERRIDES_FILE)
    bank.stats["seconds"] = round(time.perf_counter() - started, 2)
    return bank


# --- instructor overrides: knowledge/quiz.yaml ----------------------------------------------------


def apply_overrides(bank: Bank, path: Path) -> None:
    """Apply `disable`, `edit` and `add` from the instructor's YAML file (a missing file changes nothing).

    A malformed file or entry is reported in `bank.problems` and otherwise ignored: the generated bank
    stays in service.
    """
    import yaml

    if not path.is_file():
        return
    where = f"{path.parent.name}/{path.name}"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        bank.problems.append(f"{where}: no se puede leer ({exc}); se ignora.")
        return
    if not isinstance(data, dict):
        bank.problems.append(f"{where}: debe tener las claves disable, edit y add.")
        return
    disabled = {str(x) for x in data.get("disable") or []}
    edits = data.get("edit") or {}
    items = []
    for item in bank.items:
        if item.id in disabled:
            continue
        change = edits.get(item.id) if isinstance(edits, dict) else None
        if isinstance(change, dict):
            fields = {k: v for k, v in change.items() if k in ("question", "reference", "key_terms", "options",
                                                                  "answer", "subject")}  # fmt: skip
            try:
                item = Item.from_dict({**item.to_dict(), **fields, "source": "instructor"})
                if item.type in ("definition", "compare"):
                    item = replace(item, type="open")  # the instructor's wording is shown as written
            except (TypeError, ValueError) as exc:
                bank.problems.append(f"{where}: edit {item.id}: {exc}")
        items.append(item)
    for n, entry in enumerate(data.get("add") or [], start=1):
        try:
            items.append(_added(entry, bank.titles))
        except (TypeError, ValueError, KeyError) as exc:
            bank.problems.append(f"{where}: add nº {n}: {exc}")
    unknown = (disabled | set(edits if isinstance(edits, dict) else ())) - {i.id for i in bank.items}
    if unknown:
        bank.problems.append(f"{where}: ids que no están en el banco: {', '.join(sorted(unknown))}")
    bank.items = items
    bank.stats["overrides"] = {"disabled": len(disabled - unknown), "edited": len(set(edits) - unknown),
                               "added": len(data.get("add") or [])}  # fmt: skip


def _added(entry: Any, titles: dict[str, str]) -> Item:
    if not isinstance(entry, dict):
        raise TypeError("cada elemento de 'add' es un diccionario con section, question y reference")
    section, question = str(entry["section"]), str(entry["question"]).strip()
    kind = str(entry.get("type", "open"))
    if kind not in ("open", "mc", "tf"):
        raise ValueError(f"type '{kind}' no válido: open, mc o tf")
    options = tuple(str(o) for o in entry.get("options") or ())
    answer = str(entry.get("answer", "")).strip()
    if kind == "mc" and answer not in options:
        raise ValueError("en una pregunta mc, 'answer' debe ser una de las 'options'")
    if kind == "tf":
        answer = "true" if str(answer).lower() in ("true", "verdadero", "v", "sí", "si", "yes") else "false"
    reference = str(entry.get("reference", "")).strip()
    if not reference:
        raise ValueError("falta 'reference' (la frase del curso que responde)")
    item_id = str(entry.get("id") or _item_id(section, "custom", question, reference))
    return Item(item_id, section, titles.get(section, section), kind, question, reference,
                tuple(str(k) for k in entry.get("key_terms") or ()), subject=question, options=options,
                answer=answer, source="instructor")  # fmt: skip


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and data.get("format") == GENERATOR else {}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    try:
        write_atomic(path, json.dumps(data, ensure_ascii=False, indent=1))
    except OSError as exc:
        raise TutorError(f"No se pudo guardar el banco de preguntas en «{path}» ({exc.strerror}).") from exc


def giveaways(item: Item) -> list[str]:
    """The answer words a question shows (an empty list when it gives nothing away)."""
    shown = item.question if item.type != "mc" else item.subject
    stems = set(re.findall(r"\w+", fold(shown)))
    keys = [item.answer] if item.type in ("cloze", "mc") else list(item.key_terms)
    if item.type == "tf":
        return []
    found = []
    for key in keys:
        words = [w for w in re.findall(r"\w+", fold(key)) if len(w) > 2 or w.isdigit()]
        if words and all(w in stems for w in words):
            found.append(key)
    return found
