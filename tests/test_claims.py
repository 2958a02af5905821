"""The labelled claims set and `tutor eval --claims`: schema, metric, command, and eval/claims.jsonl itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tutor.claims import LABELS, answers, claim_scores, decisions, load_claims, load_entropies, recorded_decisions
from tutor.cli import main
from tutor.config import Settings
from tutor.errors import DatasetError

CLAIMS = Path(__file__).resolve().parent.parent / "eval" / "claims.jsonl"
PASSAGE = {"chunk_id": "c#3.3.3#0", "section_id": "3.3.3", "title": "RoBERTa", "text": "RoBERTa usa X. Y."}


def claim(cid: str, aid: str, position: int, sentence: str, label: str, **kw: Any) -> dict[str, Any]:
    """One line of a claims file; `kept`/`verified` are what the recorded verifier decided."""
    kept, verified = kw.pop("kept", True), kw.pop("verified", True)
    base = {
        "id": cid, "answer_id": aid, "question_id": aid.split("/")[-1], "model": aid.split("/")[0],
        "source": "generated", "split": "tune", "language": "es", "kind": "factual", "question": "¿qué es?",
        "answer": "Uno. Dos. Tres.", "position": position, "sentence": sentence, "passages": [PASSAGE],
        "label": label, "note": "inventado" if label == "unsupported" else "",
        "verifier": {"kept": kept, "reason": None if kept else "palabras ajenas al pasaje",
                     "answer_verified": verified, "answer_rejected": None if verified else "too_little"},
    }  # fmt: skip
    base.update(kw)
    return base


def write(path: Path, rows: list[Any]) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows) + "\n")
    return path


def test_malformed_and_inconsistent_lines_are_reported_with_their_number(tmp_path: Path) -> None:
    good = claim("a1", "m/q1", 0, "Uno.", "supported")
    rows: list[Any] = [
        good,
        "{roto",
        claim("a2", "m/q1", 1, "Dos.", "maybe"),  # unknown label
        claim("a3", "m/q1", 1, "Dos.", "unsupported", note=""),  # unsupported needs a note
        claim("a4", "m/q1", 1, "Dos.", "supported", answer="Otra cosa. Dos."),  # same answer id, other text
        claim("b1", "n/q1", 0, "Uno.", "supported", split="heldout"),  # the question is in the tuning part
        claim("a5", "m/q1", 2, "Cuatro.", "supported"),  # not a sentence of the answer
        "",
        claim("a1", "m/q1", 2, "Tres.", "supported"),  # repeated id
        claim("a6", "m/q1", 2, "Tres.", "not_a_claim", verifier={"kept": "sí"}),
        claim("a7", "m/q1", 2, "Tres.", "not_a_claim"),
    ]
    data = load_claims(write(tmp_path / "c.jsonl", rows))
    assert [c.id for c in data.items] == ["a1", "a7"]
    assert [e.split(":")[0] for e in data.errors] == [f"línea {n}" for n in (2, 3, 4, 5, 6, 7, 9, 10)]
    assert "nota" in data.errors[2] and "línea 1" in data.errors[3] and "tune" in data.errors[4]


def test_passages_and_prompt_are_given_once_per_answer(tmp_path: Path) -> None:
    """Later lines of an answer inherit its first line's passages and prompt; a line that gives other
    ones is inconsistent, and the first line of an answer must give its passages."""
    first = claim("a1", "m/q1", 0, "Uno.", "supported", prompt="Contexto: …")
    later = {k: v for k, v in claim("a2", "m/q1", 1, "Dos.", "supported").items() if k not in ("passages", "prompt")}
    other = claim("a3", "m/q1", 2, "Tres.", "supported", passages=[{**PASSAGE, "text": "Otro."}], prompt="Contexto: …")
    orphan = {k: v for k, v in claim("b1", "n/q2", 0, "Uno.", "supported").items() if k != "passages"}
    data = load_claims(write(tmp_path / "c.jsonl", [first, later, other, orphan]))
    assert [c.id for c in data.items] == ["a1", "a2"]
    assert data.items[1].passages == data.items[0].passages and data.items[1].prompt == "Contexto: …"
    assert [e.split(":")[0] for e in data.errors] == ["línea 3", "línea 4"]
    assert "passages" in data.errors[0] and "passages" in data.errors[1]


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="No existe"):
        load_claims(tmp_path / "none.jsonl")


def test_precision_and_recall_by_hand(tmp_path: Path) -> None:
    rows = [
        # tuning part, model m: answer q1 shown as verified, one false sentence let through
        claim("t1", "m/q1", 0, "Uno.", "supported"),
        claim("t2", "m/q1", 1, "Dos.", "unsupported"),
        claim("t3", "m/q1", 2, "Tres.", "supported", kept=False),
        # model n, answer q2 not shown: its kept sentences are not let through
        claim("t4", "n/q2", 0, "Uno.", "supported", verified=False),
        claim("t5", "n/q2", 1, "Dos.", "not_a_claim", verified=False),
        claim("t6", "n/q3", 1, "Dos.", "not_a_claim"),  # kept and shown, but never scored
        # held-apart part
        claim("h1", "m/q4", 0, "Uno.", "supported", split="heldout"),
        claim("h2", "m/q4", 1, "Dos.", "unsupported", split="heldout", kept=False),
    ]
    data = load_claims(write(tmp_path / "c.jsonl", rows))
    assert not data.errors
    out = claim_scores(data.items, decisions(data.items, recorded_decisions))
    tune, held = out["tune"], out["heldout"]
    assert tune["n"] == 6 and tune["precision"] == 0.5 and tune["recall"] == round(1 / 3, 4)
    assert tune["labels"] == {"supported": 3, "unsupported": 1, "not_a_claim": 2}
    assert tune["let_through"] == {"supported": 1, "unsupported": 1, "not_a_claim": 1}
    assert tune["by_model"]["m"]["recall"] == 0.5 and tune["by_model"]["n"]["recall"] == 0.0
    assert tune["by_model"]["n"]["precision"] is None  # nothing let through: no precision to speak of
    assert tune["unsupported_let_through"] == ["t2"]
    assert held["precision"] == 1.0 and held["recall"] == 1.0 and set(held["by_model"]) == {"m"}
    assert [[c.id for c in group] for group in answers(data.items)][:2] == [["t1", "t2", "t3"], ["t4", "t5"]]


def test_eval_claims_reruns_the_verifier_through_the_cli(
    course_settings: Settings, course_index, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A course sentence copied word for word is let through; one with a date the course lacks is not."""
    chunk = next(c for c in course_index.chunks.values() if "Robustly optimized BERT approach" in c.text)
    true = next(line.strip() for line in chunk.text.splitlines() if "Robustly optimized" in line)
    false = "RoBERTa fue desarrollada por Facebook AI en 2007."
    answer = f"{true} {false}"
    passage = {"chunk_id": chunk.id, "section_id": chunk.section_id, "title": chunk.section_title, "text": chunk.text}
    common = {"answer": answer, "passages": [passage], "question": "¿qué es RoBERTa?"}
    rows: list[Any] = [
        claim("x1", "m/q1", 0, true, "supported", **common),
        claim("x2", "m/q1", 1, false, "unsupported", kept=False, **common),
        claim("y1", "n/q2", 0, true, "supported", split="heldout", **common),
        claim("y2", "n/q2", 1, false, "unsupported", split="heldout", kept=False, **common),
        "[1, 2]",
    ]
    path = write(tmp_path / "c.jsonl", rows)
    args = ["--data-dir", str(course_settings.data_dir), "--knowledge-dir", str(course_settings.knowledge_dir)]
    code = main([*args, "eval", "--claims", str(path), "--json"])
    out, err = capsys.readouterr()
    assert code == 1 and "línea 5" in err, "a malformed line is reported and makes the command fail"
    result = json.loads(out)["claims"]
    for part, model in (("tune", "m"), ("heldout", "n")):
        assert result[part]["precision"] == 1.0 and result[part]["recall"] == 1.0
        assert set(result[part]["by_model"]) == {model} and result[part]["by_model"][model]["n"] == 2
    assert result["n"] == 4 and result["malformed"] == 1 and result["stale_passages"] == 0
    assert result["agreement_with_recorded"] == 1.0
    assert main([*args, "eval", "--claims", str(path)]) == 1
    assert "precisión 1.0" in capsys.readouterr().out


def test_the_claims_set_is_well_formed() -> None:
    data = load_claims(CLAIMS)
    assert not data.errors, data.errors[:5]
    items = data.items
    assert len(items) >= 600
    assert {c.label for c in items} <= set(LABELS)
    assert all(c.note.strip() for c in items if c.label == "unsupported")
    models = {c.model for c in items}
    assert {"gemma-3-270m", "qwen2.5-coder-1.5b"} <= models
    for model in models:
        own = [c for c in items if c.model == model]
        assert sum(c.split == "heldout" for c in own) >= len(own) / 3, model
    parts: dict[str, set[str]] = {}
    for c in items:
        parts.setdefault(c.question_id, set()).add(c.split)
    assert all(len(p) == 1 for p in parts.values()), "a question's sentences are all in one part"
    assert any(c.source == "issue" for c in items)
    for group in answers(items):
        assert [c.position for c in group] == list(range(len(group))), group[0].answer_id
    assert CLAIMS.stat().st_size < 5 * 2**20, "passages and prompt once per answer (eval/README.md)"


def test_the_writers_entropies_are_read_beside_the_claims_and_fit_their_own_model(
    course_settings: Settings,
    course_index,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`tutor verifier train` fits the plain model and, from CLAIMS-tokens.jsonl, the one that also weighs
    the writer's entropy, each at the lowest threshold reaching the precision asked for, pooled and for
    each writer; `tutor eval --claims` then uses it for the claims that have entropies. On a sixth of
    eval/claims.jsonl's answers (so a writer needs fewer rows than the shipped WRITER_ROWS)."""
    import tutor.meaning_fit
    from tutor.meaning import MeaningModel

    monkeypatch.setattr(tutor.meaning_fit, "WRITER_ROWS", 10)

    lines = CLAIMS.read_text(encoding="utf-8").splitlines()
    chosen = sorted({json.loads(line)["answer_id"] for line in lines})[::6]
    rows = [row for row in map(json.loads, lines) if row["answer_id"] in chosen]
    claims = write(tmp_path / "claims.jsonl", rows)  # whole answers: each first line gives passages and prompt
    ids = {row["id"] for row in rows}
    tokens = [line for line in CLAIMS.with_name("claims-tokens.jsonl").read_text().splitlines()
              if json.loads(line)["id"] in ids]  # fmt: skip
    (tmp_path / "claims-tokens.jsonl").write_text("\n".join(tokens) + "\n")
    out = tmp_path / "model.json"
    args = ["--data-dir", str(course_settings.data_dir), "--knowledge-dir", str(course_settings.knowledge_dir)]
    assert main([*args, "verifier", "train", "--claims", str(claims), "--out", str(out), "--precision", "0.9"]) == 0
    printed = capsys.readouterr().out
    plain, tokened = MeaningModel.load(out), MeaningModel.load(tmp_path / "model+tokens.json")
    assert plain is not None and tokened is not None and not plain.tokens and tokened.tokens, printed
    for model in (plain, tokened):
        curve = model.meta["cross_validation"]["curve"]
        reaching = [float(t) for t, got in curve.items() if got["precision"] >= 0.9]
        best = max(curve.items(), key=lambda item: (item[1]["precision"], item[1]["recall"]))
        assert model.threshold == (min(reaching) if reaching else float(best[0])), curve
        writers = model.meta["cross_validation"]["by_writer"]
        assert set(writers) == set(model.thresholds) == {"gemma-3-270m", "qwen2.5-coder-1.5b"}, printed
        for writer, row in writers.items():
            own = [float(t) for t, got in row["curve"].items() if got["precision"] >= 0.9]
            assert row["examples"] >= 10 and model.thresholds[writer] == row["threshold"]
            assert not own or row["threshold"] == min(own)
    assert main([*args, "verifier", "train", "--claims", str(claims), "--out", str(out), "--precision", "2"]) == 2
    assert "--precision 2.0" in capsys.readouterr().err

    def claims_eval(*extra: str) -> dict[str, Any]:
        assert main([*args, "eval", "--claims", str(claims), "--json", *extra]) == 0
        return json.loads(capsys.readouterr().out)["claims"]

    with_tokens, without = claims_eval(), claims_eval("--no-tokens")
    assert with_tokens["with_entropy"] == len(tokens) > 80 and without["with_entropy"] == 0
    assert "entropía" in with_tokens["verifier"] and "entropía" not in without["verifier"]


def test_a_damaged_entropies_file_is_read_line_by_line(tmp_path: Path) -> None:
    path = write(tmp_path / "claims-tokens.jsonl", ['{"id": "a", "entropy_mean": 0.5}', '{"id": "x"}', "no es JSON",
                                                    '{"id": "b", "entropy_mean": "alto"}', "[1]"])  # fmt: skip
    assert load_entropies(path) == {"a": 0.5}
    assert load_entropies(tmp_path / "absent.jsonl") == {}
