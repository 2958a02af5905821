"""Values passed between the stages: frozen dataclasses, no behaviour beyond formatting."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Chunk:
    """A window of ~120 words inside one section of one knowledge file."""

    id: str  # stable: "<source>#<section_id>#<position>"
    source: str  # file name relative to the knowledge folder
    section_id: str  # "3.3.3", or a slug of the heading path for material without numbers
    section_title: str
    position: int  # order of the chunk inside its source file
    text: str  # the passage itself, without the heading
    hash: str  # sha256 of what gets embedded; unchanged hash means no re-embedding

    @property
    def embed_text(self) -> str:
        """What the embedder and BM25 see: the heading first, so every window knows its topic."""
        return f"{self.section_id} {self.section_title}\n{self.text}"


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk with the scores that ranked it."""

    chunk: Chunk
    score: float  # fused reciprocal-rank score
    bm25_rank: int | None  # 1-based rank in the BM25 list, None when absent from it
    dense_rank: int | None

    @property
    def section_id(self) -> str:
        return self.chunk.section_id

    def citation(self) -> str:
        """'§3.3.3 RoBERTa y sus Mejoras Respecto a BERT'."""
        return f"§{self.chunk.section_id} {self.chunk.section_title}"
