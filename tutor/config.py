"""Settings: the only place where environment variables (TUTOR_*) and defaults are read.

Defaults are offline and local: the packaged embedder and generator, data under the user's data
folder (never the package folder), the course in the project's knowledge/ folder. It does not load
anything.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_DIR = Path(__file__).resolve().parent.parent


def _default_knowledge_dir() -> Path:
    # A source checkout (the README's install is editable) keeps the course beside the package.
    bundled = PROJECT_DIR / "knowledge"
    return bundled if bundled.is_dir() else Path.cwd() / "knowledge"


class Settings(BaseSettings):
    """Every setting, with its environment variable TUTOR_<NAME>."""

    # populate_by_name: `generator` reads TUTOR_MODEL from the environment and generator= in code.
    model_config = SettingsConfigDict(env_prefix="TUTOR_", extra="forbid", populate_by_name=True)

    @classmethod
    def load(cls, **overrides: Any) -> Settings:
        """The settings, or a TutorError naming each bad TUTOR_* variable (never pydantic's traceback)."""
        from pydantic import ValidationError

        from tutor.errors import TutorError

        try:
            return cls(**overrides)
        except ValidationError as exc:
            problems = "; ".join(f"TUTOR_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
            raise TutorError(f"Configuración no válida: {problems}") from exc

    data_dir: Path = Field(
        default_factory=lambda: Path(platformdirs.user_data_dir("tutor-llm", appauthor=False)),
        description="Folder for derived data: the index, the assembled model. A cache, safe to delete.",
    )
    knowledge_dir: Path = Field(
        default_factory=_default_knowledge_dir,
        description="Folder of course material (.md, .txt, .pdf) that the tutor answers from.",
    )
    prompts_dir: Path = Field(
        default_factory=lambda: PROJECT_DIR / "prompts",
        description="Folder of the instructor's templates (every text the tutor says or sends to a model).",
    )
    embedder: str = Field(
        default="auto",
        description="'auto' (embeddinggemma-300m when installed and the machine qualifies, else e5-small), "
        "a catalogue name ('e5-small', also 'e5'; 'embeddinggemma-300m'), or the path of a local "
        "sentence-transformers model folder. Changing it rebuilds the index.",
    )
    embed_precision: Literal["auto", "float32", "bfloat16"] = Field(
        default="auto",
        description="EmbeddingGemma's weights: 'auto' = bfloat16 where this CPU multiplies it faster than "
        "float32 (timed once; the same retrieval figures, a quarter less memory), else float32 as published.",
    )
    embed_threads: int = Field(
        default_factory=lambda: min(2, os.cpu_count() or 1),
        ge=1,
        le=64,
        description="Threads for the e5 embedder. Two halve a query's latency when cores are free "
        "(bench/retrieval.py: p95 70.7 -> 36.8 ms on 2 cores); vectors are identical either way.",
    )
    top_k: int = Field(default=5, ge=1, le=50, description="Passages retrieved for a question.")
    per_section: int = Field(
        default=1, ge=1, le=5, description="At most this many passages from one section in the top k."
    )
    candidates: int = Field(
        default=30, ge=5, le=500, description="Candidates taken from each of BM25 and dense before fusion."
    )
    rrf_k: int = Field(
        default=20,
        ge=1,
        description="Reciprocal-rank fusion constant. Unset, the embedder's profile decides (retrieve.PROFILES: "
        "20 for e5, which beat 60 on eval/dev.jsonl; 10 for EmbeddingGemma); set, it wins.",
    )
    use_weight: float = Field(
        default=0.5,
        ge=0.0,
        le=4.0,
        description="Weight in the fusion of the USE sentence ranking. Unset, the embedder's profile decides "
        "(0.5 beside e5's lists, 0.25 beside EmbeddingGemma's); set, it wins; 0 ignores it (still indexed).",
    )
    chunk_words: int = Field(default=120, ge=20, le=400, description="Target words per chunk.")
    chunk_overlap: int = Field(default=20, ge=0, le=100, description="Words shared by consecutive chunks.")
    max_query_chars: int = Field(
        default=2000, ge=50, description="Longer questions are cut to this many characters before search."
    )
    host: str = Field(default="127.0.0.1", description="Address the web app listens on.")
    port: int = Field(default=7860, ge=1, le=65535, description="Port of the web app.")
    max_students: int = Field(
        default=64, ge=1, le=1000,
        description="Conversations answered at once by the web app; the model still serves one at a time, in "
        "arrival order, while the others read the course's sentences and their place in the queue.",
    )  # fmt: skip
    malloc_arenas: int = Field(
        default=2, ge=0, le=64,
        description="glibc malloc arenas the web app may use (0: glibc's default, 8 per core). Each worker thread "
        "otherwise grows an arena of its own and keeps its high-water mark (docs/load.md).",
    )  # fmt: skip

    # Generation (issue 3). `gguf`, not `model_path`: pydantic reserves the model_ prefix. The field
    # is `generator`, read from TUTOR_MODEL: `--model auto|echo|none` of the CLI means something else.
    generator: str | None = Field(
        default=None,
        validation_alias="TUTOR_MODEL",
        description="The generator: a catalogue name ('gemma-3-270m', 'qwen2.5-coder-0.5b', "
        "'qwen2.5-coder-1.5b') or a GGUF file; None = automatic (qwen2.5-coder-1.5b when installed and "
        "the machine qualifies, else the packaged Gemma 3 270M). Wins over TUTOR_GGUF.",
    )
    gguf: Path | None = Field(
        default=None,
        description="GGUF model file to generate with (an older name for a path in TUTOR_MODEL); None = "
        "the TUTOR_MODEL rule.",
    )
    prompt_style: Literal["auto", "chat", "completion"] = Field(
        default="auto",
        description="'auto': 'chat' when the GGUF carries a chat template, else 'completion' (base "
        "models); for the server backend 'auto' means 'chat'.",
    )
    n_ctx: int = Field(default=4096, ge=256, le=262144, description="Context window in tokens.")
    n_threads: int | None = Field(
        default=None, ge=1, le=256, description="Generation threads; None = llama-cpp-python's default."
    )
    n_threads_batch: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="Prompt-processing threads; None = llama-cpp-python's default (all cores).",
    )
    weight_repack: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="Let llama.cpp repack the weights for this CPU (use_extra_bufts). 'auto': off where the "
        "build or the CPU has AMX, whose repacking segfaults (tutor/cpu.py), on elsewhere.",
    )
    seed: int = Field(default=42, ge=1, description="Sampling seed (llama-cpp-python treats 0 as random).")
    temperature: float = Field(default=0.0, ge=0.0, le=2.0, description="0 = greedy, reproducible.")
    top_p: float = Field(default=0.95, gt=0.0, le=1.0, description="Nucleus sampling when temperature > 0.")
    repeat_penalty: float = Field(default=1.1, ge=0.5, le=2.0, description="Penalty on repeated tokens.")
    max_tokens: int = Field(default=160, ge=1, le=8192, description="Reply budget in tokens.")
    stop: tuple[str, ...] = Field(
        default=(), description="Extra stop sequences for every reply (JSON list in TUTOR_STOP)."
    )
    verifier_precision: float | None = Field(
        default=None,
        gt=0.0,
        le=1.0,
        description="Of the generated sentences shown as the course's, the share the meaning check aims to "
        "have supported (measured on eval/claims.jsonl); lower shows more of the model's prose and more "
        "errors. None = the fitted models' own (0.97).",
    )
    general_answers: bool = Field(
        default=False,
        description="For an on-topic question the course does not cover, add the model's general answer, "
        "marked as outside the course and not checked against it. Only with a configured chat model: "
        "never with the packaged Gemma, which invents.",
    )
    llm_server_url: str | None = Field(
        default=None,
        description="Base URL of an OpenAI-compatible server (http://host:port/v1): llama_cpp.server, "
        "vLLM, Ollama. When set, the tutor generates there and loads no GGUF.",
    )
    llm_server_model: str | None = Field(
        default=None, description="Model name sent to the server; None = the first one it lists."
    )
    llm_server_timeout: float = Field(
        default=60.0, gt=0, le=3600, description="Seconds to wait for a connection or the next token."
    )
    llm_server_retries: int = Field(
        default=2, ge=0, le=10, description="Retries when the server refuses or times out before answering."
    )

    chroma_url: str | None = Field(
        default=None,
        description="URL of a `chroma run` server (http://host:port) holding the course vectors, shared by "
        "several front ends; None = the embedded Chroma folder in <data_dir>/index/chroma.",
    )

    # The gate (issue 4).
    gate_model_dir: Path | None = Field(
        default=None,
        description="Folder of the gate's classifier (gate_model.npz + .json); None = the one shipped in "
        "tutor/gate/data/. `tutor gate train` writes there.",
    )
    gate_window_chars: int = Field(
        default=2000, ge=200, le=20000, description="Only a message's first N characters are classified."
    )
    gate_extra_model: Path | None = Field(
        default=None, description="Optional local Hugging Face text-classification folder, a second opinion."
    )
    gate_extra_labels: dict[str, str] = Field(
        default_factory=dict,
        description='Its labels mapped to unsafe reasons, JSON: {"INJECTION": "prompt_injection"}.',
    )
    gate_extra_threshold: float = Field(
        default=0.8,
        gt=0.0,
        le=1.0,
        description="A mapped label with at least this probability makes a message unsafe.",
    )

    # The local store and the instructor panel (issues 6 and 8).
    store_questions: bool = Field(
        default=True,
        description="Keep each question's text in the local store (tutor.sqlite3); false keeps only counts. "
        "No student identity is ever stored.",
    )
    store_max_mb: float = Field(
        default=200.0, gt=0, description="Largest size of the local store; past it new events are reported, not kept."
    )
    instructor_password: SecretStr | None = Field(
        default=None, description="Password of the instructor panel; None (the default) = no panel."
    )
    upload_max_mb: float = Field(
        default=5.0, gt=0, le=500, description="Largest course file an instructor may upload in the panel."
    )

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"

    @property
    def store_path(self) -> Path:
        return self.data_dir / "tutor.sqlite3"
