"""Ingestion into a real Chroma folder, incremental updates, and the start-up self-check."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from pdfs import pdf_without_text

from tutor.config import Settings
from tutor.errors import IndexNotReady
from tutor.index import Index, ingest


@pytest.fixture(params=["e5", "minilm"])
def embedder(request: pytest.FixtureRequest):
    """Both embedder backends: the packaged e5 and a sentence-transformers folder."""
    return request.getfixturevalue(request.param)


def test_ingest_then_open_finds_every_chunk(small_settings: Settings, embedder) -> None:
    report = ingest(small_settings, embedder, progress=False)
    assert report.files == 3 and report.chunks == report.embedded > 0 and not report.problems
    index = Index.open(small_settings, embedder)
    sections = {c.section_id for c in index.chunks.values()}
    assert {"3.3.1", "3.3.3", "4.3.1", "notas"} <= sections
    assert index.lexical("enmascaramiento dinamico", 1) == [
        next(c.id for c in index.chunks.values() if c.section_id == "3.3.3")
    ]


def test_reingest_without_changes_embeds_nothing(small_settings: Settings, e5) -> None:
    ingest(small_settings, e5, progress=False)
    again = ingest(small_settings, e5, progress=False)
    assert (again.embedded, again.removed, again.rebuilt) == (0, 0, None)
    assert again.unchanged == again.chunks


def test_changed_section_is_replaced_and_deleted_file_disappears(small_settings: Settings, e5) -> None:
    first = ingest(small_settings, e5, progress=False)
    bert = small_settings.knowledge_dir / "bert.md"
    bert.write_text(bert.read_text().replace("Facebook AI en 2019", "Facebook AI en 2019 con 160 GB de texto"))
    (small_settings.knowledge_dir / "notas.txt").unlink()
    report = ingest(small_settings, e5, progress=False)
    assert report.embedded == 1, "only the edited chunk is embedded again"
    assert report.removed == 1 and report.chunks == first.chunks - 1
    index = Index.open(small_settings, e5)
    assert not any(c.source == "notas.txt" for c in index.chunks.values())
    roberta = [c for c in index.chunks.values() if c.section_id == "3.3.3"]
    assert len(roberta) == 1 and "160 GB" in roberta[0].text
    assert index._collection.count() == len(index.chunks)


def test_deleted_section_leaves_no_stale_chunk(small_settings: Settings, e5) -> None:
    ingest(small_settings, e5, progress=False)
    bert = small_settings.knowledge_dir / "bert.md"
    text = bert.read_text()
    bert.write_text(text[: text.index("### 3.3.3.")])
    ingest(small_settings, e5, progress=False)
    index = Index.open(small_settings, e5)
    assert "3.3.3" not in {c.section_id for c in index.chunks.values()}
    assert all(index.chunks[i].section_id != "3.3.3" for i in index.dense(e5.embed_queries(["RoBERTa"])[0], 10))


def test_changing_the_embedder_rebuilds_and_binds_the_index(small_settings: Settings, e5, minilm) -> None:
    ingest(small_settings, e5, progress=False)
    with pytest.raises(IndexNotReady, match="tutor ingest --rebuild"):
        Index.open(small_settings, minilm)
    report = ingest(small_settings, minilm, progress=False)
    assert report.rebuilt and "embeddings" in report.rebuilt
    assert report.embedded == report.chunks
    Index.open(small_settings, minilm)


def test_unreadable_file_keeps_what_was_indexed(small_settings: Settings, e5) -> None:
    ingest(small_settings, e5, progress=False)
    (small_settings.knowledge_dir / "rag.md").write_bytes("Recuperación".encode("latin-1"))
    (small_settings.knowledge_dir / "escaneo.pdf").write_bytes(pdf_without_text())
    report = ingest(small_settings, e5, progress=False)
    assert len(report.problems) == 2
    assert any("rag.md" in p and "UTF-8" in p and "conservan" in p for p in report.problems)
    assert any("escaneo.pdf" in p and "capa de texto" in p for p in report.problems)
    index = Index.open(small_settings, e5)
    assert "4.3.1" in {c.section_id for c in index.chunks.values()}


def test_rebuild_starts_from_scratch(small_settings: Settings, e5) -> None:
    ingest(small_settings, e5, progress=False)
    report = ingest(small_settings, e5, rebuild=True, progress=False)
    assert report.rebuilt and report.embedded == report.chunks


def _damage_missing(settings: Settings) -> None:
    shutil.rmtree(settings.index_dir)


def _damage_manifest_only(settings: Settings) -> None:
    shutil.rmtree(settings.index_dir / "chroma")


def _damage_truncated_sqlite(settings: Settings) -> None:
    (settings.index_dir / "chroma" / "chroma.sqlite3").write_bytes(b"")


def _damage_garbage_sqlite(settings: Settings) -> None:
    (settings.index_dir / "chroma" / "chroma.sqlite3").write_bytes(b"\x13\x37 not a database" * 500)


def _damage_foreign_version(settings: Settings) -> None:
    path = settings.index_dir / "manifest.json"
    data = json.loads(path.read_text())
    data["format"] = 0
    path.write_text(json.dumps(data))


def _damage_other_use_model(settings: Settings) -> None:
    """Sentence vectors from another USE release are not comparable with today's queries."""
    path = settings.index_dir / "manifest.json"
    data = json.loads(path.read_text())
    data["use"]["version"] = "0.0.1"
    path.write_text(json.dumps(data))


def _damage_manifest_garbage(settings: Settings) -> None:
    (settings.index_dir / "manifest.json").write_text("{ esto no es json")


def _damage_empty_manifest(settings: Settings) -> None:
    path = settings.index_dir / "manifest.json"
    data = json.loads(path.read_text())
    data["chunks"] = []
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    "damage",
    [
        _damage_missing,
        _damage_manifest_only,
        _damage_truncated_sqlite,
        _damage_garbage_sqlite,
        _damage_foreign_version,
        _damage_other_use_model,
        _damage_manifest_garbage,
        _damage_empty_manifest,
    ],
)
def test_damaged_index_gives_one_clear_message_and_rebuild_fixes_it(small_settings: Settings, e5, damage) -> None:
    from chromadb.api.client import SharedSystemClient

    ingest(small_settings, e5, progress=False)
    SharedSystemClient.clear_system_cache()  # as a new process would see the folder
    damage(small_settings)
    SharedSystemClient.clear_system_cache()
    try:
        Index.open(small_settings, e5)
    except IndexNotReady as exc:
        assert "tutor ingest --rebuild" in str(exc)
    else:
        pytest.fail(f"{damage.__name__}: a damaged index opened without complaint")
    ingest(small_settings, e5, rebuild=True, progress=False)
    index = Index.open(small_settings, e5)
    assert len(index.chunks) == index._collection.count() > 0


def test_missing_knowledge_folder_is_explained(tmp_path: Path, e5) -> None:
    from tutor.errors import TutorError

    settings = Settings(data_dir=tmp_path / "d", knowledge_dir=tmp_path / "no-existe")
    with pytest.raises(TutorError, match="TUTOR_KNOWLEDGE_DIR"):
        ingest(settings, e5, progress=False)


def test_lost_vector_folder_is_caught_by_the_self_query(tmp_path: Path) -> None:
    """Chroma persists an HNSW folder past ~1,000 vectors; without it count() is right but search is not.
    The fake embedder (fault injection only) makes 1,500 chunks in about a second."""
    from chromadb.api.client import SharedSystemClient
    from fakes import HashEmbedder

    knowledge = tmp_path / "k"
    knowledge.mkdir()
    body = "\n".join(f"## 9.{i}. Tema {i}\n\nTexto propio del tema número {i}." for i in range(1, 1501))
    (knowledge / "grande.md").write_text(body, encoding="utf-8")
    settings = Settings(data_dir=tmp_path / "d", knowledge_dir=knowledge)
    fake = HashEmbedder()
    assert ingest(settings, fake, progress=False).chunks == 1500
    SharedSystemClient.clear_system_cache()
    folders = [p for p in (settings.index_dir / "chroma").iterdir() if p.is_dir()]
    assert folders, "Chroma should have persisted its vector folder at this size"
    for folder in folders:
        shutil.rmtree(folder)
    SharedSystemClient.clear_system_cache()
    with pytest.raises(IndexNotReady, match="tutor ingest --rebuild"):
        Index.open(settings, fake)
