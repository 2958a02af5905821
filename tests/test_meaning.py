"""The meaning check (tutor/meaning.py) through the real verifier and the packaged e5 index."""

from __future__ import annotations

from tutor.meaning import load_for
from tutor.verify import Verifier

QUESTION = "¿cómo se interpreta la perplejidad?"
RIGHT = "Un valor más bajo de perplejidad sugiere un mejor rendimiento del modelo."
WRONG = "Un valor más alto de perplejidad sugiere un mejor rendimiento del modelo."  # the course says lower


def test_the_packaged_meaning_model_belongs_to_the_packaged_embedder(course_index) -> None:
    assert load_for(course_index.embedder.name) is not None
    assert load_for("sentence-transformers:another-model") is None
    assert load_for("embeddinggemma-300m") is not None  # the capable set has one too (tutor verifier train)
    assert Verifier(course_index).meaning is not None and Verifier(course_index, meaning=None).meaning is None


def test_a_flipped_claim_scores_below_the_course_sentence(course_index, retriever) -> None:
    verifier = Verifier(course_index)
    assert verifier.meaning is not None
    passages = retriever.search(QUESTION, 5)
    assert "4.4.1" in [p.section_id for p in passages]
    evidence = verifier.assess(f"{RIGHT}\n{WRONG}", question=QUESTION, passages=passages, language="es")
    assert isinstance(evidence, list) and len(evidence) == 2
    right, wrong = evidence
    assert wrong.flips() == (False, True) and right.flips() == (False, False)
    assert verifier.meaning.score(right) > verifier.meaning.score(wrong)


def test_an_invented_number_is_dropped_whatever_the_score(course_index, retriever) -> None:
    verifier = Verifier(course_index)
    passages = retriever.search("¿cuántos parámetros tiene GPT-3?", 5)
    verdict = verifier.check("GPT-3 tiene 10 parámetros y genera texto.", question="¿cuántos parámetros tiene GPT-3?",
                             passages=passages, language="es")  # fmt: skip
    assert not verdict.kept and "número ausente del curso: 10" in verdict.removed[0][1]


def test_the_meaning_module_examples_hold() -> None:
    import doctest

    import tutor.meaning

    failures, tried = doctest.testmod(tutor.meaning)
    assert tried >= 3 and failures == 0


def test_the_course_turned_round_is_dropped_whatever_the_score(course_index, retriever) -> None:
    """Issue 18's cases: the perplexity said high where the course says low (§4.4.1), and BERT given
    RoBERTa's dynamic masking (§3.3.3), each in the course's own words."""
    verifier = Verifier(course_index)
    cases = [
        (QUESTION, "La perplejidad interesa que sea alta, porque un valor alto sugiere un mejor rendimiento.",
         "contrario"),
        ("¿qué mejoras introdujo RoBERTa respecto a BERT?",
         "BERT usa una estrategia de enmascaramiento dinámico, donde las palabras enmascaradas cambian en cada época.",
         "atribuye a bert"),
    ]  # fmt: skip
    for question, sentence, reason in cases:
        passages = retriever.search(question, 5)
        verdict = verifier.check(sentence, question=question, passages=passages, language="es")
        assert not verdict.kept and reason in verdict.removed[0][1], verdict
    right = (
        "RoBERTa usa una estrategia de enmascaramiento dinámico, donde las palabras enmascaradas cambian en cada época."
    )
    question = "¿qué mejoras introdujo RoBERTa respecto a BERT?"
    evidence = verifier.assess(right, question=question, passages=retriever.search(question, 5), language="es")
    assert isinstance(evidence, list) and evidence[0].invented is None
