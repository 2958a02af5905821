"""The instructor-owned prompt files: validation with file and line, hot reload, last good version kept."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tutor.prompts import LANGUAGES, PromptLibrary, PromptTemplateError

REPO = Path(__file__).resolve().parent.parent
SNAPSHOTS = Path(__file__).resolve().parent / "transcripts" / "prompts"
FIXTURE_VALUES = {
    "context": "[§3.3.3 RoBERTa y sus Mejoras Respecto a BERT] RoBERTa es una variante de BERT.",
    "question": "¿Qué cambió RoBERTa?",
    "language_name": "español",
    "question_label": "Pregunta del estudiante",
    "answer_label": "Respuesta del tutor",
    "sections": "§3.3.3 y §3.3.1",
    "term": "enmascaramiento dinámico",
    "section": "3.3.3",
    "title": "RoBERTa y sus Mejoras Respecto a BERT",
    "terms": "BERT, NSP",
    "hint": "RoBERTa usa una estrategia de enmascaramiento dinámico.",
}


def test_every_shipped_template_is_valid() -> None:
    assert PromptLibrary(REPO / "prompts").check() == []


@pytest.mark.parametrize("name", PromptLibrary(REPO / "prompts").names())
def test_snapshot_of_every_template(name: str) -> None:
    """An instructor's edit shows up here as a readable diff. UPDATE_SNAPSHOTS=1 rewrites them."""
    library = PromptLibrary(REPO / "prompts")
    template = library.get(name)
    values = {v: FIXTURE_VALUES.get(v, f"<{v}>") for v in template.variables}
    rendered = library.render(name, **values)
    snapshot = SNAPSHOTS / f"{name.replace('/', '__')}.txt"
    if os.environ.get("UPDATE_SNAPSHOTS"):
        snapshot.write_text(rendered + "\n", encoding="utf-8")
    assert snapshot.is_file(), f"no snapshot for {name}: run with UPDATE_SNAPSHOTS=1 and review the diff"
    assert rendered + "\n" == snapshot.read_text(encoding="utf-8")


@pytest.mark.parametrize("kind", ["extractive_intro", "no_passages", "not_in_course", "sources_heading", "welcome",
                                  "check_question", "socratic_hint1", "socratic_hint2", "error",
                                  "general_heading", "fallback_notice", "not_named"])  # fmt: skip
def test_student_texts_exist_in_every_language(kind: str) -> None:
    for language in LANGUAGES:
        assert (REPO / "prompts" / "replies" / language / f"{kind}.md").is_file(), (language, kind)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    stamp = time.time() + 5  # a later mtime even on file systems with coarse timestamps
    os.utime(path, (stamp, stamp))


def test_unknown_variable_is_reported_with_file_and_line(tmp_path: Path) -> None:
    write(tmp_path / "answer.md", "---\nvariables: [context]\n---\nMaterial:\n$context\n\nPregunta: $contexto\n")
    with pytest.raises(PromptTemplateError, match=r"prompts/answer.md: line 7: unknown variable 'contexto'"):
        PromptLibrary(tmp_path).get("answer")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sin cabecera $x", "line 1"),
        ("---\nvariables: x\n---\nhola", "'variables'"),
        ("---\nvariables: [a\n---\nhola", "YAML"),
        ("---\nvariables: []\n---\ncuesta 5 $ al mes", "line 4: '\\$' suelto"),
    ],
)
def test_malformed_files_are_explained(tmp_path: Path, text: str, message: str) -> None:
    write(tmp_path / "t.md", text)
    with pytest.raises(PromptTemplateError, match=message):
        PromptLibrary(tmp_path).get("t")


def test_edits_are_live_and_a_broken_edit_keeps_the_last_good_version(tmp_path: Path) -> None:
    path = tmp_path / "replies" / "es" / "hola.md"
    write(path, "---\nvariables: [name]\n---\nHola, $name.")
    library = PromptLibrary(tmp_path)
    assert library.reply("hola", "es", name="Ana") == "Hola, Ana."
    write(path, "---\nvariables: [name]\n---\nBuenas, $name.")
    assert library.reply("hola", "es", name="Ana") == "Buenas, Ana.", "no restart needed"
    write(path, "---\nvariables: [name]\n---\nBuenas, $nombre.")
    assert library.reply("hola", "es", name="Ana") == "Buenas, Ana."
    assert "unknown variable 'nombre'" in library.errors["replies/es/hola"]
    assert any("nombre" in p for p in library.check())
    write(path, "---\nvariables: [name]\n---\nQué tal, $name.")
    assert library.reply("hola", "es", name="Ana") == "Qué tal, Ana." and not library.errors
    path.unlink()
    assert library.reply("hola", "es", name="Ana") == "Qué tal, Ana."
    assert "ya no existe" in library.errors["replies/es/hola"]


def test_reply_falls_back_to_spanish(tmp_path: Path) -> None:
    write(tmp_path / "replies" / "es" / "x.md", "---\nvariables: []\n---\nsolo en español")
    assert PromptLibrary(tmp_path).reply("x", "de") == "solo en español"
    with pytest.raises(PromptTemplateError, match="replies/es/nada.md"):
        PromptLibrary(tmp_path).reply("nada", "de")


def test_missing_value_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / "t.md", "---\nvariables: [a, b]\n---\n$a y $b")
    with pytest.raises(PromptTemplateError, match="b"):
        PromptLibrary(tmp_path).render("t", a="1")
