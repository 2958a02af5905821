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
