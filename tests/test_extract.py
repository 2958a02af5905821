"""The extractive answer on the real course index: the sentence that answers leads, heading stubs are
never quoted alone, a floor keeps off-target sentences out, and the check question follows the first quote."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tutor.evaluate import load_dataset
from tutor.extract import Extractor, Weights, bare, is_stub
from tutor.ingest import sentences
from tutor.pipeline import Answer, build_tutor
from tutor.prompts import PromptLibrary
from tutor.types import Passage

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = PromptLibrary(ROOT / "prompts")


@pytest.fixture(scope="module")
def extractor(course_index) -> Extractor:
    return Extractor(course_index, PROMPTS)


def quotes(extractor: Extractor, retriever, question: str) -> tuple[tuple[str, str], ...]:
    return extractor.answer(question, retriever.search(question, 5), "es").sentences


@pytest.mark.parametrize(
    ("question", "section", "answering"),
    [
        # Before: three sentences of §4.5 and §5.4.1; the course's definition sits under the stub "4. Perplejidad:".
        ("que es la perplejidad", "4.4.1", "cuán bien un modelo predice una muestra"),
        ("elastic net q es", "4.5.2", "Combina L1 y L2"),
        ("¿Qué cambió RoBERTa respecto a BERT?", "3.3.3", "enmascaramiento dinámico"),
        ("¿la perplejidad debe ser alta o baja?", "4.4.1", "Un valor más bajo sugiere un mejor rendimiento"),
    ],
)  # fmt: skip
def test_the_sentence_that_answers_is_quoted_and_its_section_leads(extractor, retriever, question, section, answering):
    shown = quotes(extractor, retriever, question)
    assert shown[0][0] == section
    assert any(answering in sentence for _, sentence in shown), shown


def test_a_comparison_quotes_each_part(extractor, retriever) -> None:
    shown = quotes(extractor, retriever, "¿qué diferencia hay entre SGD y Adam?")
    assert shown[0][0] == "4.5.2"
    assert any("SGD" in s for _, s in shown) and any("Adam" in s for _, s in shown)


def test_a_heading_stub_is_never_quoted_alone(extractor, retriever) -> None:
    items = [i for i in load_dataset(ROOT / "eval" / "dev.jsonl").items if i.gate == "on_topic"][:40]
    for item in items:
        for _, sentence in quotes(extractor, retriever, item.question):
            assert not sentence.endswith(":") and len(sentence.split()) >= 4, (item.id, sentence)


def test_a_stub_is_joined_to_the_sentence_it_introduces(extractor, retriever) -> None:
    first = quotes(extractor, retriever, "que es la perplejidad")[0][1]
    assert first.startswith("Perplejidad: Se utiliza para evaluar modelos de lenguaje")


def test_quotes_are_the_course_s_words(extractor, retriever, course_index) -> None:
    allowed = set()
    for chunk in course_index.chunks.values():
        units = sentences(chunk.text)
        allowed |= {bare(u) for u in units} | {f"{bare(a)} {bare(b)}" for a, b in zip(units, units[1:]) if is_stub(a)}
    for question in ("¿Qué cambió RoBERTa respecto a BERT?", "que es la perplejidad", "¿qué es una GAN?"):
        for _, sentence in quotes(extractor, retriever, question):
            assert sentence in allowed, sentence


def test_the_floor_keeps_off_target_passages_out(course_index, retriever) -> None:
    question = "¿Qué cambió RoBERTa respecto a BERT?"
    off = [Passage(c, 0.0, None, None) for c in course_index.chunks.values() if c.section_id in ("7.2", "6.3.1")]
    passages = [*retriever.search(question, 1), *off]
    wide = Extractor(course_index, PROMPTS, max_sentences=10)
    assert {s for s, _ in wide.answer(question, passages, "es").sentences} == {"3.3.3"}
    # The same call without a floor quotes them: the floor, not the passages, keeps them out.
    floorless = Extractor(course_index, PROMPTS, max_sentences=10, weights=Weights(margin=1, margin_new=1, floor=0))
    assert {s for s, _ in floorless.answer(question, passages, "es").sentences} - {"3.3.3"}


def test_the_lead_comes_from_the_best_ranked_passage_with_a_sentence(extractor, retriever) -> None:
    question = "que es la perplejidad"
    passages = retriever.search(question, 5)
    assert extractor.answer(question, passages, "es").sentences[0][0] == passages[0].section_id
    later = extractor.answer(question, passages[1:], "es").sentences
    assert later[0][0] == passages[1].section_id


def test_the_check_question_names_the_first_quote_s_section(course_settings, course_index, retriever) -> None:
    tutor, _ = build_tutor(course_settings, model="none", index=course_index)
    plan = tutor.plan("que es la perplejidad")
    final = list(tutor.answer(plan))[-1]
    section = final.answer.quoted[0][0]
    title = next(p.chunk.section_title for p in plan.passages if p.section_id == section)
    assert PROMPTS.reply("check_question", "es", term=title, section=section) in final.text
    # When the first quote is from a lower passage, the question follows the quote, not the top passage.
    rag = retriever.search("¿qué es RAG?", 1)[0]
    moved = replace(plan, passages=(rag, *plan.passages))
    text = tutor.render(Answer("…", moved, fallback="extractive", quoted=((section, "…"),)))
    assert f"(§{section})" in text.split("**")[0] and f"(§{rag.section_id})" not in text.split("**")[0]
