"""The browser page (Gradio Blocks). For now: ask a question, read the course passages that answer it.

`build_ui()` returns the Blocks and never launches it. Each browser session keeps its own history in
Gradio's chat state, never in a module global. It holds no retrieval logic; generation and the full
student interface come with later stages.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tutor.config import Settings
from tutor.errors import TutorError
from tutor.retrieve import Retriever, clean_query, search_query
from tutor.types import Passage

WELCOME = (
    "Hola, soy el tutor del curso **Grandes Modelos de Lenguaje (LLMs): Modelos Generativos y "
    "Discriminativos**. Pregúntame sobre el curso y te mostraré los pasajes que lo explican, con su sección."
)


def extractive_reply(passages: Sequence[Passage]) -> str:
    """The passages themselves, quoted, each under its section number: nothing invented."""
    if not passages:
        return "No encontré nada en el curso sobre eso. Pruebe con otras palabras."
    parts = ["Esto dice el curso:"]
    for p in passages[:3]:
        quote = "\n".join(f"> {line}" for line in p.chunk.text.splitlines())
        parts.append(f"**{p.citation()}**\n{quote}")
    others = ", ".join(f"§{p.section_id}" for p in passages[3:])
    if others:
        parts.append(f"Véase también: {others}.")
    return "\n\n".join(parts)


def build_ui(retriever: Retriever, settings: Settings) -> Any:
    import gradio as gr

    def respond(message: str, history: list[dict[str, Any]]) -> str:
        turns = [
            {"role": t["role"], "content": t["content"]}
            for t in history
            if isinstance(t, dict) and isinstance(t.get("content"), str) and t["content"] != WELCOME
        ]
        try:
            clean_query(message, settings.max_query_chars)  # an empty message is refused, not searched
            return extractive_reply(retriever.search(search_query(message, turns)))
        except TutorError as exc:
            return str(exc)

    with gr.Blocks(title="Tutor del curso de LLMs", analytics_enabled=False) as app:
        gr.Markdown("## Tutor del curso de LLMs")
        gr.ChatInterface(
            respond,
            chatbot=gr.Chatbot(value=[{"role": "assistant", "content": WELCOME}], label="Conversación"),
            textbox=gr.Textbox(placeholder="Escriba su pregunta sobre el curso…", label="Pregunta"),
            api_name="chat",
        )
    return app
