"""The browser page (Gradio Blocks): a streaming chat with the tutor, answers with their sources.

`build_ui()` returns the Blocks and never launches it. Each browser session keeps its own history in
Gradio's chat state, never in a module global; every call that reaches the model shares one
concurrency id with a limit of one (one llama.cpp context). It holds no tutoring logic: it
translates between Gradio's messages and `Tutor.plan()` / `Tutor.answer()`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from tutor.errors import TutorError
from tutor.pipeline import Tutor

log = logging.getLogger("tutor")


def build_ui(tutor: Tutor, *, notices: list[str] | None = None) -> Any:
    import gradio as gr

    welcome = tutor.prompts.reply("welcome", "es")

    def respond(message: str, history: list[dict[str, Any]]) -> Iterator[str]:
        turns = [
            {"role": t.get("role"), "content": t.get("content")}
            for t in history
            if isinstance(t, dict) and isinstance(t.get("content"), str) and t.get("content") != welcome
        ]
        try:
            for reply in tutor.answer(tutor.plan(message, turns)):
                yield reply.text
        except TutorError as exc:
            yield str(exc)
        except Exception:
            log.exception("unexpected error while answering")
            yield tutor.prompts.reply("error", "es")

    with gr.Blocks(title="Tutor del curso de LLMs", analytics_enabled=False) as app:
        gr.Markdown("## Tutor del curso de LLMs")
        for notice in notices or []:
            gr.Markdown(f"> {notice}")
        gr.ChatInterface(
            respond,
            chatbot=gr.Chatbot(value=[{"role": "assistant", "content": welcome}], label="Conversación"),
            textbox=gr.Textbox(placeholder="Escribe tu pregunta sobre el curso…", label="Pregunta"),
            api_name="chat",
            concurrency_limit=1,
        )
    return app
