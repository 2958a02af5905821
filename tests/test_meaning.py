"""The meaning check (tutor/meaning.py) through the real verifier and the packaged e5 index."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tutor.meaning import FEATURES, TOKEN_FEATURES, MeaningModel, load_for, model_path, piece_entropies
from tutor.types import Piece
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
    assert tried >= 6 and failures == 0


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


def _constant(score: float, features: tuple[str, ...], embedder: str) -> MeaningModel:
    """A meaning model that gives every sentence the same score: to see which model the verifier asks."""
    n = len(features)
    intercept = math.log(score / (1 - score))
    return MeaningModel(embedder, np.zeros(n), np.ones(n), np.zeros(n), intercept, 0.5, features)


def test_the_entropy_aware_model_decides_only_where_the_writer_gave_its_entropies(course_index, retriever) -> None:
    keeps, drops = (_constant(s, f, course_index.embedder.name) for s, f in ((0.9, FEATURES), (0.1, TOKEN_FEATURES)))
    verifier = Verifier(course_index, meaning=keeps, token_meaning=drops)
    passages = retriever.search(QUESTION, 5)
    plain = verifier.check(RIGHT, question=QUESTION, passages=passages, language="es")
    assert plain.verified and plain.kept == (RIGHT,)  # a server's reply: no entropies, today's model
    unsure = verifier.check(RIGHT, question=QUESTION, passages=passages, language="es",
                            entropy=lambda sentences: [2.5] * len(sentences))  # fmt: skip
    assert not unsure.kept and "comprobación de sentido 0.10 < 0.50" in unsure.removed[0][1]
    unknown = verifier.check(RIGHT, question=QUESTION, passages=passages, language="es",
                             entropy=lambda sentences: [None] * len(sentences))  # fmt: skip
    assert unknown.kept == (RIGHT,)  # a sentence whose tokens were not found keeps today's model


def test_streamed_pieces_give_each_sentence_the_mean_entropy_of_its_tokens() -> None:
    pieces = [Piece("La perplejidad ", (0.5, 1.5)), Piece("es baja.", (2.0,)), Piece(" Mejor", (4.0,)), Piece(".")]
    entropy = piece_entropies(pieces)
    assert entropy is not None
    assert entropy(["La perplejidad es baja.", "Mejor.", "Otra."]) == [pytest.approx(4 / 3), 4.0, None]
    assert piece_entropies(["La perplejidad ", "es baja."]) is None  # plain text: a server's reply


def test_the_packaged_entropy_aware_models_load_and_trust_a_sure_writer_more(
    course_index, retriever, tmp_path: Path
) -> None:
    for name in (course_index.embedder.name, "embeddinggemma-300m"):
        model = load_for(name, tokens=True)
        assert model is not None and model.tokens and model.threshold >= 0.5
    model = load_for(course_index.embedder.name, tokens=True)
    assert model is not None
    evidence = Verifier(course_index).assess(RIGHT, question=QUESTION, passages=retriever.search(QUESTION, 5),
                                             language="es")  # fmt: skip
    assert isinstance(evidence, list)
    sure, unsure = (replace(evidence[0], entropy_mean=e) for e in (0.2, 3.0))
    assert model.score(sure) > model.score(unsure)
    # A file saved with the extra feature is never read as the plain model, nor the other way round.
    plain = load_for(course_index.embedder.name)
    assert plain is not None
    model.save(model_path(course_index.embedder.name, tmp_path))
    plain.save(model_path(course_index.embedder.name, tmp_path, tokens=True))
    assert load_for(course_index.embedder.name, tmp_path) is None
    assert load_for(course_index.embedder.name, tmp_path, tokens=True) is None


def test_a_precision_setting_moves_each_threshold_along_its_saved_curve(course_index) -> None:
    """TUTOR_VERIFIER_PRECISION picks the threshold from the cross-validated curve saved at fit time, by fit's
    own rule: the fitted target gives back the fitted threshold, a lower target a lower one."""
    for tokens in (False, True):
        model = load_for(course_index.embedder.name, tokens=tokens)
        assert model is not None
        curve = sorted((float(t), f["precision"]) for t, f in model.meta["cross_validation"]["curve"].items())
        assert model.for_precision(model.meta["target_precision"]).threshold == model.threshold
        lower = model.for_precision(0.8)
        reaching = [t for t, precision in curve if precision >= 0.8]
        assert lower.threshold == reaching[0] < model.threshold and lower.coef is model.coef  # no refit
        assert model.for_precision(1.0).threshold >= model.threshold
        assert replace(model, meta={}).for_precision(0.5).threshold == model.threshold  # no curve: unchanged
    default, looser = Verifier(course_index), Verifier(course_index, precision=0.8)
    assert default.meaning and looser.meaning and default.token_meaning and looser.token_meaning
    assert looser.meaning.threshold < default.meaning.threshold
    assert looser.token_meaning.threshold < default.token_meaning.threshold
    assert Verifier(course_index, meaning=None, precision=0.8).meaning is None  # the lexical rules have no curve


def test_the_tutor_reads_the_precision_setting_and_refuses_a_bad_one(
    course_settings, course_index, monkeypatch
) -> None:
    from tutor.config import Settings
    from tutor.errors import TutorError
    from tutor.pipeline import build_tutor

    settings = course_settings.model_copy(update={"verifier_precision": 0.8})
    tutor, _ = build_tutor(settings, model="none", index=course_index)
    assert tutor.verifier.meaning is not None
    assert tutor.verifier.meaning.threshold == Verifier(course_index, precision=0.8).meaning.threshold
    tutor.use_index(course_index)  # after a re-index, the same setting
    assert tutor.verifier.meaning.threshold == Verifier(course_index, precision=0.8).meaning.threshold
    for bad in ("1.5", "0", "mucha"):
        monkeypatch.setenv("TUTOR_VERIFIER_PRECISION", bad)
        with pytest.raises(TutorError, match="Configuración no válida: TUTOR_VERIFIER_PRECISION"):
            Settings.load()
    monkeypatch.setenv("TUTOR_VERIFIER_PRECISION", "0.9")
    assert Settings.load().verifier_precision == 0.9


def test_each_catalogue_writer_has_its_own_threshold(course_index, retriever) -> None:
    """The packaged models were fitted per writer too (tutor verifier train): Qwen's fluent sentences need
    a lower score than Gemma's, and a writer the models never saw (a GGUF of one's own) gets the pooled one."""
    from tutor.catalogue import writer_name

    for tokens in (False, True):
        model = load_for(course_index.embedder.name, tokens=tokens)
        assert model is not None and set(model.thresholds) == {"gemma-3-270m", "qwen2.5-coder-1.5b"}
        assert model.threshold_for("qwen2.5-coder-1.5b") < model.threshold_for("gemma-3-270m")
        assert model.threshold_for(None) == model.threshold_for("my-own.gguf") == model.threshold
        target = model.meta["target_precision"]
        assert model.for_precision(target).thresholds == model.thresholds  # fit's rule, read back from the curve
        assert all(t <= model.thresholds[w] for w, t in model.for_precision(0.8).thresholds.items())
    assert writer_name("/data/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf") == "qwen2.5-coder-1.5b"
    assert writer_name(Path("gemma-3-270m-q4_k_m.gguf")) == "gemma-3-270m" and writer_name("/x/mine.gguf") is None
    # One sentence, real evidence, two writers: kept for the writer whose threshold it reaches only.
    verifier = Verifier(course_index)
    assert verifier.meaning is not None
    passages = retriever.search(QUESTION, 5)
    (evidence,) = verifier.assess(RIGHT, question=QUESTION, passages=passages, language="es")
    score = verifier.meaning.score(evidence)
    verifier.meaning = replace(verifier.meaning, threshold=score + 0.01, thresholds={"qwen2.5-coder-1.5b": score})
    kept = verifier.check(RIGHT, question=QUESTION, passages=passages, language="es", writer="qwen2.5-coder-1.5b")
    dropped = verifier.check(RIGHT, question=QUESTION, passages=passages, language="es")
    assert kept.kept == (RIGHT,) and not dropped.kept and "comprobación de sentido" in dropped.removed[0][1]


def test_the_packaged_gemma_reports_its_catalogue_name_as_writer(gemma) -> None:
    assert gemma.writer == "gemma-3-270m"
