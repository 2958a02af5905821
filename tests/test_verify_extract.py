"""Verification of generated text against the passages, and the extractive answer, on the real index."""

from __future__ import annotations

from pathlib import Path

import pytest

from tutor.extract import Extractor, bare, is_stub
from tutor.ingest import sentences
from tutor.prompts import PromptLibrary
from tutor.verify import Verifier

PROMPTS = PromptLibrary(Path(__file__).resolve().parent.parent / "prompts")
QUESTION = "¿Qué cambió RoBERTa respecto a BERT?"


@pytest.fixture(scope="module")
def passages(retriever):
    found = retriever.search(QUESTION, 3)
    assert found[0].section_id == "3.3.3"
    return found


@pytest.fixture(scope="module")
def verifier(course_index):
    return Verifier(course_index)


def check(verifier, passages, text, **kw):
    return verifier.check(text, question=QUESTION, passages=passages, language="es", **kw)


def test_a_faithful_paraphrase_is_verified(verifier, passages) -> None:
    text = (
        "RoBERTa es una variante de BERT que fue desarrollada por Facebook AI en 2019. "
        "RoBERTa usa una estrategia de enmascaramiento dinámico, donde las palabras enmascaradas cambian en cada época."
    )
    verdict = check(verifier, passages, text)
    assert verdict.verified and not verdict.removed and len(verdict.kept) == 2


@pytest.mark.parametrize(
    ("invented", "why"),
    [
        ("RoBERTa tiene 10 parámetros y se entrenó en 3 días.", ("número",)),
        ("RoBERTa fue desarrollada por Microsoft en 2019.", ("nombre",)),
        # Both an absent name and an absent number: which reason comes out depends on whether a passage
        # says "5" anywhere (§3.3's "T5" did, when §3.3 was among the three retrieved).
        ("RoBERTa se parece a GPT-5 en todo.", ("nombre", "número")),
    ],
)
def test_invented_numbers_and_names_are_removed(verifier, passages, invented: str, why: tuple[str, ...]) -> None:
    faithful = "RoBERTa es una variante de BERT que fue desarrollada por Facebook AI en 2019."
    verdict = check(verifier, passages, f"{faithful} {invented}")
    assert verdict.kept == (faithful,)
    assert verdict.removed[0][0] == invented and any(w in verdict.removed[0][1] for w in why)


def test_text_off_the_passages_is_not_verified(verifier, passages) -> None:
    verdict = check(
        verifier, passages, "El fútbol es un deporte muy popular que se juega con once jugadores por equipo."
    )
    assert not verdict.verified and verdict.rejected == "too_little"


@pytest.mark.parametrize(
    ("text", "rejected"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("BERT BERT", "empty"),
        ("el modelo el modelo el modelo el modelo el modelo el modelo el modelo", "loop"),
    ],
)
def test_empty_and_looping_output_is_rejected(verifier, passages, text: str, rejected: str) -> None:
    verdict = check(verifier, passages, text)
    assert not verdict.verified and verdict.rejected == rejected


def test_an_echo_of_the_prompt_is_rejected(verifier, passages) -> None:
    prompt = PROMPTS.render("chat/system", language_name="español")
    verdict = check(verifier, passages, prompt.split("\n", 2)[2], prompt=prompt)
    assert verdict.rejected == "echo"


def test_wrong_language_is_rejected(verifier, passages, course_index) -> None:
    english = Verifier(course_index, detect_language=lambda text: "en")  # a detector's verdict, injected
    verdict = english.check(
        "RoBERTa es una variante de BERT que fue desarrollada por Facebook AI en 2019.",
        question=QUESTION, passages=passages, language="es",
    )  # fmt: skip
    assert verdict.rejected == "language"


def test_extractive_answer_quotes_the_course_with_citations(course_index, passages) -> None:
    extract = Extractor(course_index, PROMPTS).answer(QUESTION, passages, "es")
    assert extract.text.startswith(PROMPTS.reply("extractive_intro", "es"))
    assert 1 <= len(extract.sentences) <= 3
    assert extract.sentences[0][0] == "3.3.3"
    # The course's words: one of its sentences, or a heading stub joined to the sentence it introduces.
    units = [sentences(c.text) for c in course_index.chunks.values()]
    allowed = {bare(u) for us in units for u in us}
    allowed |= {f"{bare(a)} {bare(b)}" for us in units for a, b in zip(us, us[1:]) if is_stub(a)}
    for section, sentence in extract.sentences:
        assert sentence in allowed and f"«{sentence}» (§{section})" in extract.text
        assert not sentence.startswith("-")


def test_extractive_answer_in_english_says_the_quotes_are_spanish(course_index, passages) -> None:
    extract = Extractor(course_index, PROMPTS).answer("What did RoBERTa change?", passages, "en")
    assert "Spanish" in extract.text.splitlines()[0]


@pytest.mark.parametrize(
    ("question", "text", "term"),
    [
        # What the packaged Gemma answered (greedy) before this check, each shown as verified:
        ("q es el beam search al generar texto?",
         "El beam search es un método de ajuste que se utiliza para generar texto con una mayor precisión.",
         "beam search"),
        ("¿qué es un jailbreak?",
         "Un jailbreak es un modelo de autoencoder que se utiliza para modelar la distribución de oraciones.",
         "jailbreak"),
        ("pa q sirven los positional encodings en un transformer?",
         "- Los positional encodings se utilizan para que el modelo procese secuencias.", "positional encodings"),
    ],
)  # fmt: skip
def test_a_subject_the_course_never_names_rejects_the_text(verifier, passages, question, text, term) -> None:
    faithful = "RoBERTa es una variante de BERT que fue desarrollada por Facebook AI en 2019."
    verdict = verifier.check(f"{text} {faithful}", question=question, passages=passages, language="es")
    assert not verdict.verified and verdict.rejected == "unnamed" and verdict.text == ""
    assert verdict.unnamed == (term,) and term in verdict.removed[0][1]


def test_a_subject_the_course_names_or_the_student_did_not_ask_about_is_not_unnamed(verifier, passages) -> None:
    # "RoBERTa" and "BERT" are the course's words; "Facebook AI" is not the subject.
    assert verifier.unnamed("RoBERTa es una variante de BERT.", {"roberta", "bert"}) == []
    # A course word in the plural or singular is still the course's ("LLM" from "LLMs").
    assert verifier.unnamed("Un LLM es un modelo grande.", {"llm"}) == []
    # An unknown word that the student did not use is left to the overlap and similarity checks.
    assert verifier.unnamed("El sharding es un proceso.", {"que", "es"}) == []
    # No verb among the first words: no subject to judge.
    assert verifier.unnamed("Para el beam search hace falta un modelo que genere texto.", {"beam", "search"}) == []


def test_unnamed_is_judged_on_spanish_replies_and_any_form_of_a_course_word(verifier, passages) -> None:
    # The course says "poda", not "podar": the same word for the student.
    assert verifier.unnamed("Podar es una técnica de reducción del tamaño del modelo.", {"podar"}) == []
    # In French the course's own terms are translated; their absence from the Spanish text proves nothing.
    verdict = verifier.check(
        "Les modèles multimodaux sont un type de modèle qui combine texte et images.",
        question="Quels modèles multimodaux le cours cite-t-il ?", passages=passages, language="fr",
    )  # fmt: skip
    assert verdict.rejected != "unnamed" and verdict.unnamed == ()


def test_a_sentence_about_something_its_passage_does_not_mention_is_removed(verifier, retriever) -> None:
    """What the packaged Gemma answered (greedy, dev item es-conc-022): the second sentence resembles a
    sentence of the chunk on pruning (§5.5.1), which never mentions a decoder; the first is anchored in
    its own passage, the VAE section."""
    question = "que hacen el codificador y el decodificador en un VAE?"
    encoder = (
        "- El codificador es un modelo de autoencoder que utiliza la estructura de los datos para generar nuevas "
        "instancias similares a los datos de entrenamiento."
    )
    decoder = (
        "- El decodificador es una técnica que se utiliza para modelar las oraciones y párrafos en texto, "
        "utilizando la distribución de probabilidad y la estructura de los datos."
    )
    passages = retriever.search(question, 5)
    assert passages[0].section_id == "4.2.2"
    verdict = verifier.check(f"{encoder}\n{decoder}", question=question, passages=passages, language="es")
    why = dict(verdict.removed)
    assert decoder in why and "sujeto (decodificador)" in why[decoder]
    # The first one's subject is in its own passage: if it goes, it is for what it says (the meaning
    # check, thresholded for precision), never for its subject.
    assert encoder in verdict.kept or "sujeto" not in why[encoder]
    # In English the subject is not the course's word either way: the check is left to Spanish replies.
    english = verifier.check(f"{encoder}\n{decoder}", question=question, passages=passages, language="en")
    assert not any("sujeto" in why for _, why in english.removed)
