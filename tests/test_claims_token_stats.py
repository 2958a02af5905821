"""tools/claims_token_stats.py with real GGUFs: the packaged Gemma (completion prompt) and SmolLM2 (its chat
template, standing in for Qwen2.5-Coder) read one stored answer each of eval/claims.jsonl."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import claims_token_stats  # noqa: E402

from tutor.engine import model_params  # noqa: E402
from tutor.meaning import piece_entropies, span_means  # noqa: E402
from tutor.text import sentences  # noqa: E402
from tutor.types import TextPrompt  # noqa: E402


def _first_answer(lines: list[dict], model: str) -> list[dict]:
    first = next(row for row in lines if row["model"] == model)
    return [row for row in lines if row["answer_id"] == first["answer_id"]]


def test_every_sentence_of_each_answer_gets_its_token_statistics(
    gemma_path: Path, smollm_path: Path, tmp_path: Path
) -> None:
    lines = [json.loads(line) for line in (ROOT / "eval" / "claims.jsonl").read_text(encoding="utf-8").splitlines()]
    chosen = _first_answer(lines, "gemma-3-270m") + _first_answer(lines, "qwen2.5-coder-1.5b")
    claims = tmp_path / "claims.jsonl"
    claims.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in chosen), encoding="utf-8")
    out = tmp_path / "tokens.jsonl"
    code = claims_token_stats.main(
        ["--gguf", f"gemma-3-270m={gemma_path}", "--gguf", f"qwen2.5-coder-1.5b={smollm_path}",
         "--claims", str(claims), "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == [c["id"] for c in chosen]  # every claim, in the claims' order
    for row in rows:
        assert row["tokens"] >= 1
        assert row["logprob_min"] <= row["logprob_mean"] <= 0.0
        assert 0.0 <= row["entropy_mean"] <= row["entropy_max"]
    # the second run keeps what the first measured and adds nothing twice
    assert claims_token_stats.main(["--gguf", f"gemma-3-270m={gemma_path}", "--claims", str(claims),
                                    "--out", str(out)]) == 0  # fmt: skip
    again = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in again] == [r["id"] for r in rows]
    assert again[-1] == rows[-1]  # the chat model's rows were not measured again, and not lost


def test_a_bad_model_argument_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_:
        claims_token_stats.main(["--gguf", "no-equals-sign", "--out", str(tmp_path / "x.jsonl")])
    assert exit_.value.code == 2


def test_the_entropies_the_tutor_records_are_those_the_claims_were_measured_with(gemma, gemma_path: Path) -> None:
    """The engine's entropies, recorded while the packaged Gemma writes, per sentence as the verifier
    reads them, match what this tool measures by reading the same text back (eval/claims-tokens.jsonl's
    figures, which the token-aware meaning model was fitted on)."""
    from llama_cpp import Llama

    prompt = TextPrompt("Pregunta: ¿Qué es la perplejidad de un modelo de lenguaje?\nRespuesta:")
    pieces = list(gemma.stream(prompt, max_tokens=48))
    text = "".join(pieces)
    said = [s for s in sentences(text) if len(s.split()) >= 3]
    assert said, text
    live = piece_entropies(pieces)
    assert live is not None
    with model_params(use_extra_bufts=False):  # off is always safe (repacking crashes on AMX, MODELS.md §1)
        llama = Llama(str(gemma_path), n_ctx=256, n_threads=1, logits_all=True, verbose=False, seed=0)
    tokens = llama.tokenize(prompt.text.encode("utf-8"), add_bos=True, special=False)
    spans, _, entropy = claims_token_stats.token_stats(llama, tokens, text)
    read_back = span_means(text, spans, list(entropy), said)
    for sentence, got, want in zip(said, live(said), read_back):
        assert got is not None and want is not None, sentence
        assert abs(got - want) < 0.35, (sentence, got, want)
