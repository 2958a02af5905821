"""Settings: the only place where environment variables (TUTOR_*) and defaults are read.

Defaults are offline and local: the packaged embedder, data under the user's data folder (never the
package folder), the course in the project's knowledge/ folder. It does not load anything.
"""

from __future__ import annotations

from pathlib import Path

import platformdirs
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_DIR = Path(__file__).resolve().parent.parent


def _default_knowledge_dir() -> Path:
    # A source checkout (the README's install is editable) keeps the course beside the package.
    bundled = PROJECT_DIR / "knowledge"
    return bundled if bundled.is_dir() else Path.cwd() / "knowledge"


class Settings(BaseSettings):
    """Every setting, with its environment variable TUTOR_<NAME>."""

    model_config = SettingsConfigDict(env_prefix="TUTOR_", extra="forbid")

    data_dir: Path = Field(
        default_factory=lambda: Path(platformdirs.user_data_dir("tutor-llm", appauthor=False)),
        description="Folder for derived data: the index, the assembled model. A cache, safe to delete.",
    )
    knowledge_dir: Path = Field(
        default_factory=_default_knowledge_dir,
        description="Folder of course material (.md, .txt, .pdf) that the tutor answers from.",
    )
    embedder: str = Field(
        default="e5",
        description="'e5' for the packaged multilingual-e5-small, or the path of a local "
        "sentence-transformers model folder.",
    )
    embed_threads: int = Field(default=1, ge=1, le=64, description="Threads for the e5 embedder.")
    top_k: int = Field(default=5, ge=1, le=50, description="Passages retrieved for a question.")
    per_section: int = Field(
        default=1, ge=1, le=5, description="At most this many passages from one section in the top k."
    )
    candidates: int = Field(
        default=30, ge=5, le=500, description="Candidates taken from each of BM25 and dense before fusion."
    )
    rrf_k: int = Field(
        default=20, ge=1, description="Reciprocal-rank fusion constant (20 beat 60 on eval/dev.jsonl)."
    )
    chunk_words: int = Field(default=120, ge=20, le=400, description="Target words per chunk.")
    chunk_overlap: int = Field(default=20, ge=0, le=100, description="Words shared by consecutive chunks.")
    max_query_chars: int = Field(
        default=2000, ge=50, description="Longer questions are cut to this many characters before search."
    )
    host: str = Field(default="127.0.0.1", description="Address the web app listens on.")
    port: int = Field(default=7860, ge=1, le=65535, description="Port of the web app.")

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"
