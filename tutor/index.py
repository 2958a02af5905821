"""The course index: a Chroma folder of chunk vectors, a manifest, and an in-memory Spanish BM25.

`ingest()` brings the index in line with the knowledge folder, incrementally: unchanged chunks keep
their vectors, changed ones are re-embedded, chunks of deleted files or sections disappear. The
collection is bound to the embedder that filled it and to the USE model of its second sentence
layer (names and versions in its metadata and the manifest).
`Index.open()` checks that Chroma, the manifest and BM25 agree and that a self-query finds its own
chunk, so a damaged or foreign index gives one clear message instead of wrong results.
It does not rank or fuse results (retrieve.py does).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tutor.config import Settings
from tutor.embed import Embedder, document_form, sentence_embedder
from tutor.errors import IndexNotReady, TutorError
from tutor.ingest import KnowledgeFileError, chunk_file, knowledge_files
from tutor.text import sentences, stems, write_atomic
from tutor.types import Chunk

log = logging.getLogger(__name__)

FORMAT = 3  # bump when the manifest or chunk layout changes: older indexes then ask for a rebuild
# chunks (main embedder), their sentences (main embedder), the same sentences (USE, see embed.py)
COLLECTIONS = ("curso", "curso_frases", "curso_frases_use")
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
    sentences_embedded: int = 0  # sentence vectors computed (the fine-grained search layer)
    use_sentences_embedded: int = 0  # sentence vectors computed by the USE embedder
    rebuilt: str | None = None  # why the collection was started from scratch, if it was
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass(frozen=True)
class _Record:
    """One vector to store: a chunk, or one sentence of a chunk."""

    id: str
    hash: str
    embed_text: str  # what an embedder without a title slot sees (the heading inside the text)
    document: str
    metadata: dict[str, Any]
    title: str | None = None  # chunks: their section title, given with `document` to an embedder with embed_titled


def _embed(embedder: Embedder, records: list[_Record]) -> np.ndarray:
    """The records' vectors, in the form the index is bound to (embed.document_form)."""
    pairs = [(r.title, r.document) for r in records if r.title is not None]
    if document_form(embedder) == "titled" and len(pairs) == len(records):  # a batch is one layer
        return embedder.embed_titled(pairs)  # type: ignore[attr-defined]
    return embedder.embed_passages([r.embed_text for r in records])


def _bound_version(embedder: Embedder) -> str:
    """The embedder's version as an index records it: with the document form, so an index built
    before titles were passed is rebuilt rather than searched with mismatched vectors."""
    form = document_form(embedder)
    return embedder.version if form == "text" else f"{embedder.version}+{form}"


def ingest(settings: Settings, embedder: Embedder, *, rebuild: bool = False, progress: bool = True) -> IngestReport:
    """Bring the index in line with the knowledge folder; returns what was done."""
    started = time.perf_counter()
    report = IngestReport()
    folder = settings.knowledge_dir
    if not folder.is_dir():
        raise TutorError(
            f"No existe la carpeta de conocimiento «{folder}». Cree la carpeta o configure TUTOR_KNOWLEDGE_DIR."
        )
    old = _previous_manifest(settings, rebuild, report)
    chunks = _read_chunks(settings, (old or {}).get("chunks", []), report)
    stores = _collections_for(settings, embedder, report)
    sentences = _sync(stores, chunks, embedder, report, progress)
    _write_manifest(settings.index_dir, embedder, chunks, sentences=sentences)
    report.chunks = len(chunks)
    report.seconds = time.perf_counter() - started
    return report


def _previous_manifest(settings: Settings, rebuild: bool, report: IngestReport) -> dict[str, Any] | None:
    """The last ingestion's manifest; None, with the store removed, when asked or of another format."""
    index_dir = settings.index_dir
    if rebuild:
        report.rebuilt = "se pidió --rebuild"
        _remove_store(index_dir, settings.chroma_url)
    old = _read_manifest(index_dir)
    if old is not None and old.get("format") != FORMAT:
        report.rebuilt = f"el índice tiene el formato {old.get('format')}, esta versión usa {FORMAT}"
        _remove_store(index_dir, settings.chroma_url)
        old = None
    return old


def _read_chunks(settings: Settings, old_chunks: list[dict[str, Any]], report: IngestReport) -> list[Chunk]:
    """Every file read and chunked. A file that cannot be read keeps what it had in the index."""
    folder = settings.knowledge_dir
    chunks: list[Chunk] = []
    for path in knowledge_files(folder):
        source = path.relative_to(folder).as_posix()
        try:
            chunks.extend(chunk_file(path, folder, words=settings.chunk_words, overlap=settings.chunk_overlap))
            report.files += 1
        except KnowledgeFileError as exc:
            kept = [Chunk(**c) for c in old_chunks if c.get("source") == source]
            chunks.extend(kept)
            note = f" Se conservan sus {len(kept)} fragmentos ya indexados." if kept else ""
            report.problems.append(f"{exc}{note}")
    if not chunks:
        raise TutorError(f"No hay material que indexar en «{folder}»: añada archivos .md, .txt o .pdf con texto.")
    return chunks


def _collections_for(settings: Settings, embedder: Embedder, report: IngestReport) -> tuple[Any, Any, Any]:
    """The three collections, started again if damaged or holding another embedder's vectors."""
    index_dir, url = settings.index_dir, settings.chroma_url
    try:
        stores = _open_collections(index_dir, embedder, create=True, url=url)
    except _Damaged as exc:
        report.rebuilt = f"el almacén de vectores estaba dañado ({exc})"
        stores = _start_over(index_dir, embedder, url)
    meta = stores[0].metadata or {}
    use = sentence_embedder()
    stored_models = tuple(meta.get(k) for k in ("embedder", "embedder_version", "use", "use_version"))
    if stored_models != (embedder.name, _bound_version(embedder), use.name, use.version):
        if stores[0].count():
            report.rebuilt = f"cambió el modelo de embeddings ({meta.get('embedder')} → {embedder.name})"
            stores = _start_over(index_dir, embedder, url)
    return stores


def _sync(stores: tuple[Any, Any, Any], chunks: list[Chunk], embedder: Embedder, report: IngestReport,
          progress: bool) -> int:  # fmt: skip
    """Sync the three layers against what Chroma really holds (a run may have been interrupted); returns
    how many sentences the index holds."""
    from tqdm import tqdm

    sentence_layer = _sentence_records(chunks)
    layers = [_chunk_records(chunks), sentence_layer, _use_records(sentence_layer)]
    plans = [_plan(store, records) for store, records in zip(stores, layers)]
    total = sum(len(plan.to_embed) for plan in plans)
    with tqdm(total=total, desc="Indexando", unit="texto", disable=not progress or not total) as bar:
        counts = [_apply(s, p, e, bar) for s, p, e in zip(stores, plans, (embedder, embedder, sentence_embedder()))]
    report.embedded, report.reused, report.unchanged, report.removed = counts[0]
    report.sentences_embedded = counts[1][0]
    report.use_sentences_embedded = counts[2][0]
    return len(sentence_layer)


def _chunk_records(chunks: list[Chunk]) -> list[_Record]:
    return [_Record(c.id, c.hash, c.embed_text, c.text, _chunk_metadata(c), c.section_title) for c in chunks]


def _sentence_records(chunks: list[Chunk]) -> list[_Record]:
    """Every sentence of four words or more, headed by its section title, pointing to its chunk.
    Searching sentences finds a precise fact that a whole window's vector dilutes."""
    records = []
    for chunk in chunks:
        for n, sentence in enumerate(s for s in sentences(chunk.text) if len(s.split()) >= 4):
            text = f"{chunk.section_title}: {sentence}"
            digest = hashlib.sha256(text.encode()).hexdigest()
            # No title of their own: EmbeddingGemma ranked them better as "title: none | text: <title>:
            # <sentence>" (eval/dev.jsonl hit@1 0.846 vs 0.850 with chunks alone titled; docs/retrieval.md).
            records.append(_Record(f"{chunk.id}~{n}", digest, text, sentence, {"chunk_id": chunk.id, "hash": digest}))
    return records


def _use_records(sentence_records: list[_Record]) -> list[_Record]:
    """The same sentences for USE, without the title: on eval/dev.jsonl USE ranked bare sentences
    better (hit@5 0.75 vs 0.685 alone), while e5 is better with it."""
    records = []
    for r in sentence_records:
        digest = hashlib.sha256(f"use\n{r.document}".encode()).hexdigest()
        records.append(_Record(r.id, digest, r.document, r.document, {**r.metadata, "hash": digest}))
    return records


@dataclass
class _SyncPlan:
    records: list[_Record]
    todo: list[_Record]  # to write: new or changed
    to_embed: list[_Record]  # of those, the ones whose vector is not stored under another id
    vectors: dict[str, np.ndarray]  # hash -> stored vector, reused
    stale: list[str]  # ids to delete


def _plan(store: Any, records: list[_Record]) -> _SyncPlan:
    stored = store.get(include=["metadatas"])
    stored_hash = {i: (m or {}).get("hash") for i, m in zip(stored["ids"], stored["metadatas"] or [])}
    wanted = {r.id for r in records}
    todo = [r for r in records if stored_hash.get(r.id) != r.hash]
    # A text that only moved (same hash, new id) keeps its vector.
    by_hash = {h: i for i, h in stored_hash.items() if h}
    vectors: dict[str, np.ndarray] = {}
    movable = sorted({by_hash[r.hash] for r in todo if r.hash in by_hash})
    if movable:
        got = store.get(ids=movable, include=["embeddings", "metadatas"])
        for vec, meta in zip(got["embeddings"], got["metadatas"]):
            vectors[meta["hash"]] = np.asarray(vec, dtype=np.float32)
    to_embed = list({r.hash: r for r in todo if r.hash not in vectors}.values())
    return _SyncPlan(records, todo, to_embed, vectors, [i for i in stored_hash if i not in wanted])


def _apply(store: Any, plan: _SyncPlan, embedder: Embedder, bar: Any) -> tuple[int, int, int, int]:
    """Embed, write and delete; returns (embedded, reused, unchanged, removed)."""
    for start in range(0, len(plan.to_embed), _BATCH):
        batch = plan.to_embed[start : start + _BATCH]
        for record, vec in zip(batch, _embed(embedder, batch)):
            plan.vectors[record.hash] = vec
        bar.update(len(batch))
    for start in range(0, len(plan.todo), 256):
        batch = plan.todo[start : start + 256]
        store.upsert(
            ids=[r.id for r in batch],
            embeddings=np.stack([plan.vectors[r.hash] for r in batch]),
            documents=[r.document for r in batch],
            metadatas=[r.metadata for r in batch],
        )
    if plan.stale:
        store.delete(ids=plan.stale)
    embedded = len(plan.to_embed)
    return embedded, len(plan.todo) - embedded, len(plan.records) - len(plan.todo), len(plan.stale)


class Index:
    """An opened, self-checked index: chunks by id, dense search through Chroma, BM25 in memory."""

    def __init__(self, chunks: list[Chunk], stores: tuple[Any, Any, Any], embedder: Embedder, sentences: int) -> None:
        self.chunks = {c.id: c for c in chunks}
        self._order = [c.id for c in chunks]
        self._collection, self._sentences, self._use_store = stores
        self._sentence_count = sentences
        self.embedder = embedder
        self.use = sentence_embedder()
        self._bm25 = SpanishBM25([c.embed_text for c in chunks])
        # Both sentence layers are searched exactly in memory (a few MB): Chroma's approximate HNSW
        # search missed the best sentence of some questions (eval/dev.jsonl), and a product is faster.
        self._e5_rows = self._sentence_matrix(self._sentences, embedder.dim)
        self._use_rows = self._sentence_matrix(self._use_store, self.use.dim)

    @classmethod
    def open(cls, settings: Settings, embedder: Embedder) -> Index:
        """Open and self-check; IndexNotReady (with the command that fixes it) on any mismatch."""
        manifest = _read_manifest(settings.index_dir)
        if manifest is None:
            raise IndexNotReady(f"No hay índice del curso en «{settings.index_dir}».")
        if manifest.get("format") != FORMAT:
            raise IndexNotReady("El índice es de otra versión del tutor.")
        built_with = manifest.get("embedder", {})
        if (built_with.get("name"), built_with.get("version")) != (embedder.name, _bound_version(embedder)):
            raise IndexNotReady(
                f"El índice se construyó con el modelo «{built_with.get('name')} {built_with.get('version')}» "
                f"y ahora está configurado «{embedder.name} {_bound_version(embedder)}»."
            )
        use, use_built = sentence_embedder(), manifest.get("use", {})
        if (use_built.get("name"), use_built.get("version")) != (use.name, use.version):
            raise IndexNotReady(
                f"Las frases se indexaron con «{use_built.get('name')} {use_built.get('version')}» "
                f"y ahora está instalado «{use.name} {use.version}»."
            )
        try:
            chunks = [Chunk(**c) for c in manifest["chunks"]]
            sentences = int(manifest["sentences"])
        except (KeyError, TypeError, ValueError) as exc:
            raise IndexNotReady("El manifiesto del índice está incompleto.") from exc
        if not chunks:
            raise IndexNotReady("El índice está vacío.")
        try:
            stores = _open_collections(settings.index_dir, embedder, create=False, url=settings.chroma_url)
        except _Damaged as exc:
            raise IndexNotReady(f"El almacén de vectores está dañado o falta ({exc}).") from exc
        index = cls(chunks, stores, embedder, sentences)
        index._self_check()
        return index

    def dense(self, vector: np.ndarray, n: int) -> list[str]:
        """Ids of the n chunks nearest to a query vector, best first."""
        n = min(n, len(self.chunks))
        result = _guard(lambda: self._collection.query(query_embeddings=[vector.tolist()], n_results=n, include=[]))
        return [i for i in result["ids"][0] if i in self.chunks]

    def dense_sentences(self, vector: np.ndarray, n: int) -> list[str]:
        """Ids of up to n chunks ranked by their sentence nearest to the query vector."""
        return self._best_sentences(self._e5_rows, vector, n)

    def use_sentences(self, query: str, n: int) -> list[str]:
        """Ids of up to n chunks ranked by their sentence nearest to the query in USE space."""
        if not len(self._use_rows[1]):
            return []
        return self._best_sentences(self._use_rows, self.use.embed_queries([query])[0], n)

    def _sentence_matrix(self, store: Any, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """(position of each sentence's chunk, -1 if unknown; the sentence vectors, one row each)."""
        got = _guard(lambda: store.get(include=["embeddings", "metadatas"]))
        position = {c: i for i, c in enumerate(self._order)}
        owners = np.asarray([position.get(str((m or {}).get("chunk_id")), -1) for m in got["metadatas"]], np.int64)
        vectors = got["embeddings"] if len(got["ids"]) else np.zeros((0, dim))
        return owners, np.asarray(vectors, dtype=np.float32).reshape(len(got["ids"]), dim)

    def _best_sentences(self, rows: tuple[np.ndarray, np.ndarray], vector: np.ndarray, n: int) -> list[str]:
        owners, matrix = rows
        known = owners >= 0
        if not known.any():
            return []
        best = np.full(len(self._order), -np.inf, dtype=np.float32)
        np.maximum.at(best, owners[known], (matrix @ vector)[known])
        top = np.argsort(-best, kind="stable")[: min(n, len(self._order))]
        return [self._order[i] for i in top if np.isfinite(best[i])]

    def sentences_of(self, chunk_ids: Sequence[str]) -> list[tuple[str, str, np.ndarray]]:
        """(chunk id, sentence, stored vector) for every indexed sentence of these chunks, in text order."""
        if not chunk_ids or not self._sentence_count:
            return []
        got = _guard(
            lambda: self._sentences.get(
                where={"chunk_id": {"$in": list(chunk_ids)}}, include=["documents", "metadatas", "embeddings"]
            )
        )
        rows = [
            (meta["chunk_id"], doc, np.asarray(vec, dtype=np.float32), int(i.rsplit("~", 1)[1]))
            for i, doc, meta, vec in zip(got["ids"], got["documents"], got["metadatas"], got["embeddings"])
        ]
        order = {c: n for n, c in enumerate(chunk_ids)}
        rows.sort(key=lambda r: (order[r[0]], r[3]))
        return [(chunk, text, vec) for chunk, text, vec, _ in rows]

    def chunk_vectors(self) -> tuple[list[Chunk], np.ndarray]:
        """Every chunk, in course order, with its stored vector (one row each): for the gate's similarity."""
        got = _guard(lambda: self._collection.get(ids=self._order, include=["embeddings"]))
        by_id = {i: vec for i, vec in zip(got["ids"], got["embeddings"])}
        if set(by_id) != set(self._order):
            raise IndexNotReady("Faltan vectores de fragmentos en el almacén de vectores.")
        return [self.chunks[i] for i in self._order], np.asarray([by_id[i] for i in self._order], dtype=np.float32)

    def tokens(self, text: str) -> list[str]:
        """The stemmed, accent-folded content words BM25 sees (text.stems: shared with the verifier and grader)."""
        return stems(text)

    def lexical(self, query: str, n: int) -> list[str]:
        """Ids of the n chunks with the best BM25 score (score > 0 only), best first."""
        return [self._order[i] for i in self._bm25.top(query, n)]

    def _self_check(self) -> None:
        for store, expected, what in (
            (self._collection, len(self.chunks), "fragmentos"),
            (self._sentences, self._sentence_count, "frases"),
            (self._use_store, self._sentence_count, "frases (USE)"),
        ):
            count = _guard(store.count)
            if count != expected:
                raise IndexNotReady(f"El almacén de vectores tiene {count} {what} y el manifiesto {expected}.")
        # One chunk's own vector must find that chunk first, and today's embedder must agree with
        # the stored vector: this catches a lost HNSW folder and a swapped model.
        probe = self.chunks[self._order[len(self._order) // 2]]
        got = _guard(lambda: self._collection.get(ids=[probe.id], include=["embeddings"]))
        if not got["ids"]:
            raise IndexNotReady("Falta un fragmento en el almacén de vectores.")
        stored = np.asarray(got["embeddings"][0], dtype=np.float32)
        fresh = _embed(self.embedder, _chunk_records([probe]))[0]
        if float(stored @ fresh) < 0.98:
            raise IndexNotReady("Los vectores guardados no coinciden con el modelo de embeddings actual.")
        if self.dense(stored, 1) != [probe.id]:
            raise IndexNotReady("La búsqueda de prueba no encontró su propio fragmento.")
        # Both sentence layers were read whole, every sentence belongs to a known chunk, and the
        # installed USE model still makes the vectors it stored.
        for (owners, matrix), what in ((self._e5_rows, "frases"), (self._use_rows, "frases (USE)")):
            if len(matrix) != self._sentence_count or (owners < 0).any():
                raise IndexNotReady(f"Los vectores de {what} no corresponden a los fragmentos del manifiesto.")
        if self._sentence_count:
            got = _guard(lambda: self._use_store.get(limit=1, include=["documents", "embeddings"]))
            use_fresh = self.use.embed_passages([got["documents"][0]])[0]
            if float(np.asarray(got["embeddings"][0], dtype=np.float32) @ use_fresh) < 0.98:
                raise IndexNotReady("Los vectores USE guardados no coinciden con el modelo USE instalado.")


class SpanishBM25:
    """BM25 over accent-stripped, Spanish-stemmed tokens without stopwords (bm25s + PyStemmer; text.stems)."""

    def __init__(self, texts: Iterable[str]) -> None:
        import bm25s

        self._bm25 = bm25s.BM25()
        self._bm25.index([stems(t) for t in texts], show_progress=False)

    def top(self, query: str, n: int) -> list[int]:
        tokens = stems(query)
        if not tokens:
            return []
        scores = self._bm25.get_scores(tokens)
        best = np.argsort(-scores, kind="stable")[:n]
        return [int(i) for i in best if scores[i] > 0]


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


def _open_collections(
    index_dir: Path, embedder: Embedder, *, create: bool, url: str | None = None
) -> tuple[Any, Any, Any]:
    """The chunk collection and the two sentence collections, bound to the embedder and USE.
    With `url` (TUTOR_CHROMA_URL) they live on a `chroma run` server; else in <index_dir>/chroma."""
    chroma_dir = index_dir / "chroma"
    if not url and not create and not (chroma_dir / "chroma.sqlite3").is_file():
        raise _Damaged("no existe chroma.sqlite3")
    use = sentence_embedder()
    metadata = {
        "embedder": embedder.name,
        "embedder_version": _bound_version(embedder),
        "use": use.name,
        "use_version": use.version,
        "format": FORMAT,
    }
    try:
        client = _chroma_client(chroma_dir, url)  # a server that is down raises TutorError, not _Damaged
        if create:
            return tuple(
                client.get_or_create_collection(
                    name,
                    embedding_function=None,
                    configuration={"hnsw": {"space": "cosine"}},
                    metadata=metadata,
                )
                for name in COLLECTIONS
            )
        return tuple(client.get_collection(name, embedding_function=None) for name in COLLECTIONS)
    except (KeyboardInterrupt, SystemExit, GeneratorExit, TutorError):
        raise
    except BaseException as exc:  # includes pyo3 panics from a folder written by another version
        raise _Damaged(f"{type(exc).__name__}: {exc}") from exc


def _chroma_client(chroma_dir: Path, url: str | None) -> Any:
    """An HttpClient for a Chroma server (shared by several front ends), else the embedded folder."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    if url:
        from urllib.parse import urlsplit

        parts = urlsplit(url if "://" in url else f"http://{url}")
        try:
            return chromadb.HttpClient(
                host=parts.hostname or "127.0.0.1",
                port=parts.port or (443 if parts.scheme == "https" else 8000),
                ssl=parts.scheme == "https",
                settings=ChromaSettings(anonymized_telemetry=False),
            )
        except Exception as exc:  # unreachable is not damaged: never rebuild over a server that is down
            raise TutorError(
                f"El servidor de Chroma ({url}) no responde: {exc} Arránquelo (chroma run --path CARPETA "
                "--host 127.0.0.1 --port 8000) o quite TUTOR_CHROMA_URL para usar la carpeta local."
            ) from exc
    chroma_dir.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(
        path=str(chroma_dir), settings=ChromaSettings(anonymized_telemetry=False, allow_reset=True)
    )


def _start_over(index_dir: Path, embedder: Embedder, url: str | None) -> tuple[Any, Any, Any]:
    """Empty collections in place of damaged ones or of another embedder's."""
    _remove_store(index_dir, url)
    return _open_collections(index_dir, embedder, create=True, url=url)


def _remove_store(index_dir: Path, url: str | None = None) -> None:
    from chromadb.api.client import SharedSystemClient

    if url:  # the server's collections go too: a rebuild starts from nothing there as well
        client = _chroma_client(index_dir / "chroma", url)
        for name in COLLECTIONS:
            if name in {c.name for c in client.list_collections()}:
                client.delete_collection(name)
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


def _write_manifest(index_dir: Path, embedder: Embedder, chunks: list[Chunk], *, sentences: int) -> None:
    """Written last and atomically: a manifest always describes a finished ingestion."""
    import chromadb

    data = {
        "format": FORMAT,
        "chromadb": chromadb.__version__,
        "embedder": {"name": embedder.name, "version": _bound_version(embedder), "dim": embedder.dim},
        "use": {"name": (use := sentence_embedder()).name, "version": use.version, "dim": use.dim},
        "sentences": sentences,
        "chunks": [asdict(c) for c in chunks],
    }
    write_atomic(index_dir / MANIFEST, json.dumps(data, ensure_ascii=False, indent=1))
