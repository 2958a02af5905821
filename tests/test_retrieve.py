"""Hybrid retrieval over the real course index (e5 + Spanish BM25, fused)."""

from __future__ import annotations

import pytest

from tutor.errors import BadQuery
from tutor.evaluate import section_hits
from tutor.retrieve import clean_query, search_query


@pytest.mark.parametrize(
    ("question", "section"),
    [
        ("¿qué cambió facebook al reentrenar bert?", "3.3.3"),
        ("what is retrieval augmented generation?", "4.3"),
        ("como se entrena un modelo pequeño para que imite a uno grande", "5.5.2"),
        ("de dónde vienen los sesgos de los modelos", "6.1.1"),
    ],
)
def test_the_answering_section_comes_first(retriever, question: str, section: str) -> None:
    passages = retriever.search(question, 5)
    assert section_hits(passages[0].section_id, section), [p.section_id for p in passages]


def test_top_k_covers_distinct_sections_with_their_metadata(retriever) -> None:
    passages = retriever.search("BERT", 5)
    assert len(passages) == 5
    assert len({p.section_id for p in passages}) == 5
    for p in passages:
        assert p.chunk.section_title and p.chunk.text and p.chunk.source.endswith(".md")
        assert p.score > 0 and (p.bm25_rank or p.dense_rank)
        assert p.citation().startswith(f"§{p.section_id} ")
    assert [p.score for p in passages] == sorted((p.score for p in passages), reverse=True)


def test_two_passages_per_section_when_configured(course_index, course_settings) -> None:
    from tutor.retrieve import Retriever

    settings = course_settings.model_copy(update={"per_section": 2})
    passages = Retriever(course_index, settings).search("RoBERTa entrenamiento BERT NSP mini-batch", 10)
    counts: dict[str, int] = {}
    for p in passages:
        counts[p.section_id] = counts.get(p.section_id, 0) + 1
    assert max(counts.values()) == 2


def test_use_sentence_layer_ranks_every_chunk_by_its_best_sentence(course_index) -> None:
    """The USE layer holds one vector per indexed sentence and finds a sentence's own chunk first."""
    chunk_id, sentence, _ = course_index.sentences_of([next(iter(course_index.chunks))])[0]
    assert course_index.use_sentences(sentence, 3)[0] == chunk_id
    ranked = course_index.use_sentences("atención", 1000)
    assert 0.9 * len(course_index.chunks) <= len(ranked) == len(set(ranked)) <= len(course_index.chunks)


@pytest.mark.parametrize("junk", ["", "   \n\t ", "¿?¡!...", "\x00\x01\x02\x7f", "\ufffd\ufffd"])
def test_a_question_without_words_is_refused_clearly(retriever, junk: str) -> None:
    with pytest.raises(BadQuery, match="pregunta"):
        retriever.search(junk)


def test_a_huge_or_binary_question_still_gets_answers(retriever) -> None:
    huge = "¿Qué es la atención en los Transformers? " * 2500  # 100,000 characters
    assert len(huge) >= 100_000
    assert retriever.search(huge, 3)
    junk = bytes(range(256)).decode("latin-1") + " atención transformers"
    assert retriever.search(junk, 3)


def test_clean_query_caps_length_and_drops_control_characters() -> None:
    assert clean_query("a\x00b\x1fc   d", 100) == "a b c d"
    assert len(clean_query("palabra " * 1000, 50)) == 50


def test_follow_up_is_searched_with_the_previous_question(retriever) -> None:
    history = [
        {"role": "user", "content": "¿Qué es RoBERTa?"},
        {"role": "assistant", "content": "Una variante de BERT."},
    ]
    query = search_query("¿y quién lo desarrolló?", history)
    assert query.startswith("¿Qué es RoBERTa?")
    assert retriever.search(query, 3)[0].section_id == "3.3.3"
    long_question = "¿cómo se evalúa un clasificador con precisión, recall, F1 y la curva ROC?"
    assert search_query(long_question, history) == long_question
