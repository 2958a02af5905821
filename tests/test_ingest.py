"""Reading knowledge files and cutting them into section-aware chunks."""

from __future__ import annotations

from pathlib import Path

import pytest
from pdfs import pdf_with_lines, pdf_without_text

from tutor.ingest import (
    KnowledgeFileError,
    chunk_file,
    chunk_text,
    knowledge_files,
    read_text,
    split_sections,
)

COURSE = Path(__file__).resolve().parent.parent / "knowledge"


def words(n: int, stem: str = "palabra") -> str:
    return " ".join(f"{stem}{i}" for i in range(n))


def test_windows_stay_near_the_target_and_overlap() -> None:
    sentences = [f"{words(15, f's{i}w')}." for i in range(40)]  # 600 words in 15-word sentences
    chunks = chunk_text("\n".join(sentences), words=120, overlap=20)
    sizes = [len(c.split()) for c in chunks]
    assert len(chunks) >= 5
    assert all(90 <= s <= 150 for s in sizes[:-1]), sizes
    assert 30 <= sizes[-1] <= 150, "the last window is neither tiny nor huge"
    for before, after in zip(chunks, chunks[1:]):
        assert after.splitlines()[0] in before.splitlines(), "consecutive windows share their boundary sentence"
    text = " ".join(chunks)
    assert all(s in text for s in sentences), "no sentence lost"


def test_a_sentence_longer_than_a_window_is_cut() -> None:
    chunks = chunk_text(words(300), words=120, overlap=20)
    assert max(len(c.split()) for c in chunks) <= 150
    assert " ".join(chunks).split()[-1] == "palabra299"


def test_short_remainder_joins_the_previous_window() -> None:
    text = "\n".join(f"{words(20, f'a{i}x')}." for i in range(6)) + "\nFin."
    chunks = chunk_text(text, words=120, overlap=20)
    assert len(chunks) == 1 or len(chunks[-1].split()) > 30


def test_numbered_list_items_are_not_split_from_their_text() -> None:
    chunks = chunk_text("Mejoras:\n1. Entrenamiento Más Extenso: más datos. Otra frase.", words=120, overlap=20)
    assert "1. Entrenamiento Más Extenso: más datos." in chunks[0]


def test_markdown_sections_carry_numbers_titles_and_heading_paths() -> None:
    text = """---
title: X
---
Preámbulo del archivo.

# 3. Modelos discriminativos
Intro del capítulo.
## 3.3. Arquitecturas
### 3.3.1. **BERT** (Bidirectional)
Texto de BERT.
# Notas
## Ejemplos prácticos
Un ejemplo.
```
# esto no es un título
```
"""
    sections = split_sections(text, markdown=True, fallback_title="apuntes")
    assert [(s.id, s.title) for s in sections] == [
        ("apuntes", "X"),
        ("3", "Modelos discriminativos"),
        ("3.3.1", "BERT (Bidirectional)"),
        ("notas/ejemplos-practicos", "Ejemplos prácticos"),
    ]
    assert "title: X" not in sections[0].text
    assert "# esto no es un título" in sections[-1].text


def test_plain_text_headings_need_two_levels_so_list_items_stay_text() -> None:
    text = "1.1. Primeros enfoques\nLos sistemas.\n1. Preentrenamiento:\nse entrena.\n2.3. Relevancia\nMucha."
    sections = split_sections(text, markdown=False, fallback_title="curso")
    assert [s.id for s in sections] == ["1.1", "2.3"]
    assert "1. Preentrenamiento:" in sections[0].text


def test_course_chunks_cover_every_numbered_section_with_text() -> None:
    path = COURSE / "llms-generativos-discriminativos.md"
    chunks = chunk_file(path, COURSE)
    ids = {c.section_id for c in chunks}
    for expected in ("1.1", "2.3", "3.3.3", "4.2.1", "5.5.2", "6.3.2", "7.3"):
        assert expected in ids
    assert all(c.text and c.hash for c in chunks)
    assert len({c.id for c in chunks}) == len(chunks)
    assert max(len(c.text.split()) for c in chunks) <= 180
    assert all(c.source == path.name for c in chunks)


def test_pdf_text_layer_is_read(tmp_path: Path) -> None:
    pdf = tmp_path / "extra.pdf"
    pdf.write_bytes(pdf_with_lines(["1.1. Primeros enfoques", "Los primeros sistemas usaban reglas hechas a mano."]))
    chunks = chunk_file(pdf, tmp_path)
    assert [c.section_id for c in chunks] == ["1.1"]
    assert "reglas hechas a mano" in chunks[0].text


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("escaneo.pdf", pdf_without_text(), "capa de texto"),
        ("roto.pdf", b"%PDF-1.4 esto no es un pdf", "PDF"),
        ("latin1.txt", "Introducción a la atención".encode("latin-1"), "UTF-8"),
        ("binario.md", bytes(range(256)) * 4, "UTF-8"),
        ("nulos.txt", b"texto\x00\x00\x00binario", "binario"),
        ("vacio.md", b"   \n\n", "no tiene texto"),
    ],
)
def test_unusable_files_get_a_clear_message(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(KnowledgeFileError, match=message) as info:
        chunk_file(path, tmp_path)
    assert name in str(info.value)


def test_a_file_that_vanished_is_reported(tmp_path: Path) -> None:
    with pytest.raises(KnowledgeFileError, match="desapareció"):
        read_text(tmp_path / "ya-no-esta.md")


def test_only_knowledge_files_are_listed(tmp_path: Path) -> None:
    for name in ("a.md", "b.txt", "c.pdf", "d.docx", ".oculto.md", "sub/e.md"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    assert [p.relative_to(tmp_path).as_posix() for p in knowledge_files(tmp_path)] == [
        "a.md", "b.txt", "c.pdf", "sub/e.md",
    ]  # fmt: skip
