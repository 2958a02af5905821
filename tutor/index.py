"""The course index: a Chroma folder of chunk vectors, a manifest, and an in-memory Spanish BM25.

`ingest()` brings the index in line with the knowledge folder, incrementally: unchanged chunks keep
their vectors, changed ones are re-embedded, chunks of deleted files or sections disappear. The
collection is bound to the embedder that filled it (name and version in its metadata).
`Index.open()` checks that Chroma, the manifest and BM25 agree and that a self-query finds its own
chunk, so a damaged or foreign index gives one clear message instead of wrong results.
It does not rank or fuse results (retrieve.py does).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import time
import unicodedata
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tutor.config import Settings
from tutor.embed import Embedder
from tutor.errors import IndexNotReady, TutorError
from tutor.ingest import KnowledgeFileError, chunk_file, knowledge_files
from tutor.types import Chunk

log = logging.getLogger(__name__)

FORMAT = 1  # bump when the manifest or chunk layout changes: older indexes then ask for a rebuild
COLLECTION = "curso"
MANIFEST = "manifest.json"
_BATCH = 16


@dataclass
class IngestReport:
    files: int = 0
    chunks: int = 0
    embedded: int = 0  # chunks whose vectors were computed in this run
    reused: int = 0  # moved chunks whose vector was kept
    unchanged: int = 0
    removed: int = 0
    rebuilt: str | None = None  # why the collection was started from scratch, if it was
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0


def ingest(settings: Settings, embedder: Embedder, *, rebuild: bool = False, progress: bool = True) -> IngestReport:
    """Bring the index in line with the knowledge folder; returns what was done."""
    started = time.perf_counter()
    report = IngestReport()
    folder = settings.knowledge_dir
    if not folder.is_dir():
        raise TutorError(
            f"No existe la carpeta de conocimiento «{folder}». Cree la carpeta o configure TUTOR_KNOWLEDGE_DIR."
        )
    index_dir = settings.index_dir
    if rebuild:
        report.rebuilt = "se pidió --rebuild"
        _remove_store(index_dir)
    old = _read_manifest(index_dir)
    if old is not None and old.get("format") != FORMAT:
        report.rebuilt = f"el índice tiene el formato {old.get('format')}, esta versión usa {FORMAT}"
        _remove_store(index_dir)
        old = None

    # 1. Read and chunk every file. A file that cannot be read keeps what it had in the index.
    old_chunks = {c["id"]: c for c in (old or {}).get("chunks", [])}
    chunks: list[Chunk] = []
    paths = knowledge_files(folder)
    for path in paths:
        source = path.relative_to(folder).as_posix()
        try:
            chunks.extend(chunk_file(path, folder, words=settings.chunk_words, overlap=settings.chunk_overlap))
            report.files += 1
        except KnowledgeFileError as exc:
            kept = [Chunk(**c) for c in old_chunks.values() if c["source"] == source]
            chunks.extend(kept)
            note = f" Se conservan sus {len(kept)} fragmentos ya indexados." if kept else ""
            report.problems.append(f"{exc}{note}")
    if not chunks:
        raise TutorError(
            f"No hay material que indexar en «{folder}»: añada archivos .md, .txt o .pdf con texto."
        )

    # 2. Open the collection, starting again if it is damaged or holds another embedder's vectors.
    try:
        collection = _open_collection(index_dir, embedder, create=True)
    except _Damaged as exc:
        report.rebuilt = f"el almacén de vectores estaba dañado ({exc})"
        _remove_store(index_dir)
        collection = _open_collection(index_dir, embedder, create=True)
    meta = collection.metadata or {}
    if (meta.get("embedder"), meta.get("embedder_version")) != (embedder.name, embedder.version):
        if collection.count():
            report.rebuilt = f"cambió el modelo de embeddings ({meta.get('embedder')} → {embedder.name})"
            _remove_store(index_dir)
            collection = _open_collection(index_dir, embedder, create=True)

    # 3. Diff against what Chroma really holds (not the manifest: a run may have been interrupted).
    stored = collection.get(include=["metadatas"])
    stored_hash = {i: (m or {}).get("hash") for i, m in zip(stored["ids"], stored["metadatas"] or [])}
    wanted = {c.id: c for c in chunks}
    stale = [i for i in stored_hash if i not in wanted]
    todo = [c for c in chunks if stored_hash.get(c.id) != c.hash]
    report.unchanged = len(chunks) - len(todo)

    # A chunk that only moved (same text, new id) keeps its vector.
    by_hash = {h: i for i, h in stored_hash.items() if h}
    movable = [by_hash[c.hash] for c in todo if c.hash in by_hash]
    vectors: dict[str, np.ndarray] = {}
    if movable:
        got = collection.get(ids=movable, include=["embeddings", "metadatas"])
        for vec, meta_ in zip(got["embeddings"], got["metadatas"]):
            vectors[meta_["hash"]] = np.asarray(vec, dtype=np.float32)
    to_embed = [c for c in todo if c.hash not in vectors]
    report.reused = len(todo) - len(to_embed)

    from tqdm import tqdm

    bar = tqdm(total=len(to_embed), desc="Indexando", unit="fragmento", disable=not progress or not to_embed)
    for start in range(0, len(to_embed), _BATCH):
        batch = to_embed[start : start + _BATCH]
        for chunk, vec in zip(batch, embedder.embed_passages([c.embed_text for c in batch])):
            vectors[chunk.hash] = vec
        bar.update(len(batch))
    bar.close()
    report.embedded = len(to_embed)

    for start in range(0, len(todo), 256):
        batch = todo[start : start + 256]
        collection.upsert(
            ids=[c.id for c in batch],
            embeddings=np.stack([vectors[c.hash] for c in batch]),
            documents=[c.text for c in batch],
            metadatas=[_chunk_metadata(c) for c in batch],
        )
    if stale:
        collection.delete(ids=stale)
    report.removed = len(stale)

    _write_manifest(index_dir, embedder, chunks)
    report.chunks = len(chunks)
    report.seconds = time.perf_counter() - started
    return report


class Index:
    """An opened, self-checked index: chunks by id, dense search through Chroma, BM25 in memory."""

    def __init__(self, chunks: list[Chunk], collection: Any, embedder: Embedder) -> None:
        self.chunks = {c.id: c for c in chunks}
        self._order = [c.id for c in chunks]
        self._collection = collection
        self.embedder = embedder
        self._bm25 = SpanishBM25([c.embed_text for c in chunks])

    @classmethod
    def open(cls, settings: Settings, embedder: Embedder) -> Index:
        """Open and self-check; IndexNotReady (with the command that fixes it) on any mismatch."""
        manifest = _read_manifest(settings.index_dir)
        if manifest is None:
            raise IndexNotReady(f"No hay índice del curso en «{settings.index_dir}».")
        if manifest.get("format") != FORMAT:
            raise IndexNotReady("El índice es de otra versión del tutor.")
        built_with = manifest.get("embedder", {})
        if (built_with.get("name"), built_with.get("version")) != (embedder.name, embedder.version):
            raise IndexNotReady(
                f"El índice se construyó con el modelo «{built_with.get('name')} {built_with.get('version')}» "
                f"y ahora está configurado «{embedder.name} {embedder.version}»."
            )
        try:
            chunks = [Chunk(**c) for c in manifest["chunks"]]
        except (KeyError, TypeError) as exc:
            raise IndexNotReady("El manifiesto del índice está incompleto.") from exc
        if not chunks:
            raise IndexNotReady("El índice está vacío.")
        try:
            collection = _open_collection(settings.index_dir, embedder, create=False)
        except _Damaged as exc:
            raise IndexNotReady(f"El almacén de vectores está dañado o falta ({exc}).") from exc
        index = cls(chunks, collection, embedder)
        index._self_check()
        return index

    def dense(self, vector: np.ndarray, n: int) -> list[str]:
        """Ids of the n chunks nearest to a query vector, best first."""
        n = min(n, len(self.chunks))
        result = _guard(lambda: self._collection.query(query_embeddings=[vector.tolist()], n_results=n, include=[]))
        return [i for i in result["ids"][0] if i in self.chunks]

    def lexical(self, query: str, n: int) -> list[str]:
        """Ids of the n chunks with the best BM25 score (score > 0 only), best first."""
        return [self._order[i] for i in self._bm25.top(query, n)]

    def _self_check(self) -> None:
        count = _guard(self._collection.count)
        if count != len(self.chunks):
            raise IndexNotReady(
                f"El almacén de vectores tiene {count} fragmentos y el manifiesto {len(self.chunks)}."
            )
        # One chunk's own vector must find that chunk first, and today's embedder must agree with
        # the stored vector: this catches a lost HNSW folder and a swapped model.
        probe = self.chunks[self._order[len(self._order) // 2]]
        got = _guard(lambda: self._collection.get(ids=[probe.id], include=["embeddings"]))
        if not got["ids"]:
            raise IndexNotReady("Falta un fragmento en el almacén de vectores.")
        stored = np.asarray(got["embeddings"][0], dtype=np.float32)
        fresh = self.embedder.embed_passages([probe.embed_text])[0]
        if float(stored @ fresh) < 0.98:
            raise IndexNotReady("Los vectores guardados no coinciden con el modelo de embeddings actual.")
        if self.dense(stored, 1) != [probe.id]:
            raise IndexNotReady("La búsqueda de prueba no encontró su propio fragmento.")


class SpanishBM25:
    """BM25 over accent-stripped, Spanish-stemmed tokens without stopwords (bm25s + PyStemmer)."""

    def __init__(self, texts: Iterable[str]) -> None:
        import bm25s
        import Stemmer
        from bm25s.stopwords import STOPWORDS_SPANISH

        self._stemmer = Stemmer.Stemmer("spanish")
        self._stop = {_fold(w) for w in STOPWORDS_SPANISH}
        self._bm25 = bm25s.BM25()
        self._bm25.index([self.tokens(t) for t in texts], show_progress=False)

    def tokens(self, text: str) -> list[str]:
        words = [w for w in re.findall(r"\w+", _fold(text)) if w not in self._stop and (len(w) > 1 or w.isdigit())]
        return [str(s) for s in self._stemmer.stemWords(words)]

    def top(self, query: str, n: int) -> list[int]:
        tokens = self.tokens(query)
        if not tokens:
            return []
        scores = self._bm25.get_scores(tokens)
        best = np.argsort(-scores, kind="stable")[:n]
        return [int(i) for i in best if scores[i] > 0]


def _fold(text: str) -> str:
    """Lowercase without accents: students often type 'atencion' for 'atención'."""
    return "".join(c for c in unicodedata.normalize("NFKD", text.lower()) if not unicodedata.combining(c))


class _Damaged(Exception):
    """Chroma could not open or read its folder."""


def _guard(call: Any) -> Any:
    """Run a Chroma call; its errors, Rust panics (BaseException) included, become IndexNotReady."""
    try:
        return call()
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as exc:  # pyo3's PanicException derives from BaseException
        raise IndexNotReady(f"El almacén de vectores no responde ({type(exc).__name__}: {exc}).") from exc


def _open_collection(index_dir: Path, embedder: Embedder, *, create: bool) -> Any:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_dir = index_dir / "chroma"
    if not create and not (chroma_dir / "chroma.sqlite3").is_file():
        raise _Damaged("no existe chroma.sqlite3")
    try:
        chroma_dir.mkdir(parents=True, exist_ok=True)
        client = chromadb.PersistentClient(
            path=str(chroma_dir), settings=ChromaSettings(anonymized_telemetry=False, allow_reset=True)
        )
        if create:
            return client.get_or_create_collection(
                COLLECTION,
                embedding_function=None,
                configuration={"hnsw": {"space": "cosine"}},
                metadata={"embedder": embedder.name, "embedder_version": embedder.version, "format": FORMAT},
            )
        return client.get_collection(COLLECTION, embedding_function=None)
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as exc:  # includes pyo3 panics from a folder written by another version
        raise _Damaged(f"{type(exc).__name__}: {exc}") from exc


def _remove_store(index_dir: Path) -> None:
    from chromadb.api.client import SharedSystemClient

    SharedSystemClient.clear_system_cache()  # a cached client would keep using the deleted folder
    shutil.rmtree(index_dir, ignore_errors=True)


def _chunk_metadata(chunk: Chunk) -> dict[str, Any]:
    return {
        "source": chunk.source,
        "section_id": chunk.section_id,
        "section_title": chunk.section_title,
        "position": chunk.position,
        "hash": chunk.hash,
    }


def _read_manifest(index_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((index_dir / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"format": "ilegible"}
    return data if isinstance(data, dict) else {"format": "ilegible"}


def _write_manifest(index_dir: Path, embedder: Embedder, chunks: list[Chunk]) -> None:
    """Written last and atomically: a manifest always describes a finished ingestion."""
    import chromadb

    data = {
        "format": FORMAT,
        "chromadb": chromadb.__version__,
        "embedder": {"name": embedder.name, "version": embedder.version, "dim": embedder.dim},
        "chunks": [asdict(c) for c in chunks],
    }
    index_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=index_dir, prefix=".manifest-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle, ensure_ascii=False, indent=1)
    os.replace(tmp, index_dir / MANIFEST)
