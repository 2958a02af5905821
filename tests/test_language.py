"""The reply language: rules, word lists and detectors together, the conversation's language kept."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tutor.evaluate import EvalItem, language_scores, load_dataset
from tutor.gate.model import load_examples
from tutor.language import SUPPORTED

DEV = Path(__file__).resolve().parent.parent / "eval" / "dev.jsonl"
ENGLISH = [
    {"role": "user", "content": "What is the difference between BERT and GPT?"},
    {"role": "assistant", "content": "BERT reads in both directions; GPT predicts the next word."},
]


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("hola", "es"),  # langdetect says Welsh (MODELS.md §5)
        ("¿qué es BERT?", "es"),  # langdetect says French
        ("ñ", "es"),
        ("gracias!!", "es"),
        ("thank you so much", "en"),
        ("what is LoRA?", "en"),
        ("obrigado", "pt"),
        ("o que é um transformer?", "pt"),
        ("c'est quoi un embedding ?", "fr"),
        ("merci beaucoup", "fr"),
        ("bon dia", "ca"),
        ("què és un transformer?", "ca"),
        ("grazie mille", "it"),
        ("cos'è un modello linguistico?", "it"),
        ("danke", "de"),
        ("was ist ein Sprachmodell?", "de"),
        ("Could you explain how the attention mechanism weighs the words of a sentence?", "en"),
        ("Qual é a diferença entre aprendizagem supervisionada e não supervisionada?", "pt"),
    ],
)
def test_a_new_conversation(detector, text: str, language: str) -> None:
    assert detector.detect(text, []) == language


def test_a_new_conversation_starts_in_spanish(detector) -> None:
    for text in ("ok", "BERT?", "RAG", "GPT-3 vs T5", "123", ""):
        assert detector.detect(text, []) == "es", text


def test_short_or_ambiguous_messages_keep_the_conversation_language(detector) -> None:
    for text in ("ok", "BERT?", "GPT-3 vs T5", "RoBERTa??", "🙂", "L1 vs L2", "…"):
        assert detector.detect(text, ENGLISH) == "en", text


def test_a_confident_message_of_four_words_or_more_switches(detector) -> None:
    assert detector.detect("¿y en qué se diferencia de T5?", ENGLISH) == "es"
    assert detector.detect("Und was ist der Unterschied zu RoBERTa?", ENGLISH) == "de"
    spanish = [{"role": "user", "content": "¿qué es el fine-tuning?"}]
    assert detector.detect("What about few-shot learning then?", spanish) == "en"
    assert detector.detect("BERT large vs base", spanish) == "es"  # English words, not English


def test_history_is_replayed_not_just_the_last_turn(detector) -> None:
    history = [*ENGLISH, {"role": "user", "content": "ok"}, {"role": "assistant", "content": "…"}]
    assert detector.detect("thanks", history) == "en"
    assert detector.detect("RAG?", history) == "en"


def test_langdetect_is_seeded() -> None:
    from langdetect import DetectorFactory

    from tutor.language import LanguageDetector

    LanguageDetector()
    assert DetectorFactory.seed == 0


@pytest.mark.parametrize(
    "text",
    ["", "   ", "🙂🙂🙂", "???!!!", "\x00\x07\x1b[31m", "机器学习是什么？", "ما هو التعلم الآلي؟",
     "Что такое BERT?", "x" * 100_000, "qué es BERT " * 10_000,
     "what is BERT y para qué sirve en español o em português"],
)  # fmt: skip
def test_bad_input_gets_a_supported_language(detector, text: str) -> None:
    assert detector.detect(text, ENGLISH) in SUPPORTED
    assert detector.detect(text, []) in SUPPORTED


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=300), previous=st.text(max_size=50))
def test_any_text_gets_a_supported_language(detector, text: str, previous: str) -> None:
    assert detector.detect(text, [{"role": "user", "content": previous}]) in SUPPORTED


def test_packaged_examples(detector) -> None:
    """The gate's labelled examples also carry their language: 1,700+ messages, many short."""
    examples = load_examples()
    hits = [detector.detect(e.text, e.history) == e.language for e in examples]
    short = [ok for e, ok in zip(examples, hits) if len(e.text.split()) <= 3]
    assert sum(hits) / len(hits) >= 0.97 and sum(short) / len(short) >= 0.95


def test_dev_set_targets(detector) -> None:
    """Issue 4: >= 0.97 on the dev set's messages, >= 0.95 on those of three words or fewer."""
    out = language_scores(load_dataset(DEV).items, lambda item: detector.detect(item.question, item.history))
    assert out["n"] >= 250, "the dev set only grows"
    assert out["accuracy"] >= 0.97 and out["short_accuracy"] >= 0.95, out


def test_language_scores_by_hand() -> None:
    def item(i: str, question: str, language: str) -> EvalItem:
        return EvalItem(i, question, language, "on_topic", (), (), "factual")

    items = [item("a", "hola", "es"), item("b", "what is BERT and why", "en"), item("c", "oi", "pt")]
    out = language_scores(items, lambda it: "es")
    assert out == {"n": 3, "accuracy": 0.3333, "short_n": 2, "short_accuracy": 0.5, "misses": ["b", "c"]}
