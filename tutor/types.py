"""Values passed between the stages: frozen dataclasses, no behaviour beyond formatting."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

# One turn of a conversation as the interfaces keep it: {"role": "user" | "assistant", "content": str,
# optional "meta": {...}} (the tutor's turns carry Answer.meta: language, mode, citations, quiz).
Turn = dict[str, Any]


class Piece(str):
    """A streamed piece of a reply, and the entropy (nats) of each token behind it when the model gives
    them (llama.cpp does; a server does not): a plain string to everyone who does not ask."""

    entropies: tuple[float, ...]

    def __new__(cls, text: str, entropies: tuple[float, ...] = ()) -> Piece:
        piece = super().__new__(cls, text)
        piece.entropies = entropies
        return piece


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


@dataclass(frozen=True)
class Message:
    """One turn for a model with a chat template; the GGUF's own template turns it into tokens."""

    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True)
class ChatPrompt:
    """What a chat-template model sees: the messages, system text first, question last."""

    messages: tuple[Message, ...]
    stop: tuple[str, ...] = ()  # besides the template's own end-of-turn token


@dataclass(frozen=True)
class TextPrompt:
    """What a base model (no chat template) sees: one completion-style text, and where the answer ends."""

    text: str
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class GateDecision:
    """What the gate decided about one student message, and why."""

    label: Literal["on_topic", "off_topic", "unsafe"]
    score: float  # confidence in the label, 0..1 (1.0 when a rule decided)
    # course | related | chitchat | other_subject | harm | self_harm | harassment | personal_data | cheating |
    # prompt_injection | disinformation
    reason: str
    source: str = "classifier"  # rules | classifier | history | extra_model | empty
    rule: str = ""  # the rule that fired (source "rules"), or why "course" became "related"
    similarity: float = 0.0  # best cosine similarity of the message to a course chunk
    nearest: tuple[str, ...] = ()  # ids of the two course sections closest to the message
    truncated: bool = False  # a very long message: its opening window (each sentence once) was classified

    @property
    def allowed(self) -> bool:
        return self.label == "on_topic"
