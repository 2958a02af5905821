"""The browser page (Gradio Blocks): a streaming chat with the tutor, answers with their sources.

`build_ui()` returns the Blocks and never launches it. Each browser session keeps its own history
and the tutor's notes on its replies (the socratic hint ladder reads them) in Gradio state, never in
a module global; model calls are queued one at a time (one llama.cpp context). It holds no tutoring
logic: it translates between Gradio's messages and `Tutor.plan()` / `Tutor.answer()`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from tutor.errors import TutorError
from tutor.pipeline import Tutor

log = logging.getLogger("tutor")
MODES = [("Explicar", "explain"), ("Socrático", "socratic")]


def build_ui(tutor: Tutor, *, notices: list[str] | None = None) -> Any:
    import gradio as gr

    welcome = tutor.prompts.reply("welcome", "es")

    def respond(message: str, history: list[dict[str, Any]], mode: str, metas: list[dict[str, Any]]):
        turns, replies = [], 0
        for t in history:
            if not isinstance(t, dict) or not isinstance(t.get("content"), str) or t.get("content") == welcome:
                continue
            turn = {"role": t.get("role"), "content": t["content"]}
            if turn["role"] == "assistant":
                turn["meta"] = metas[replies] if replies < len(metas) else {}
                replies += 1
            turns.append(turn)
        try:
            for reply in tutor.answer(tutor.plan(message, turns, mode)):
                if reply.final and reply.answer is not None:
                    metas = [*metas[:replies], reply.answer.meta]
                yield reply.text, metas
        except TutorError as exc:
            yield str(exc), metas
        except Exception:
            log.exception("unexpected error while answering")
            yield tutor.prompts.reply("error", "es"), metas

    def stream(message: str, history: list[dict[str, Any]], mode: str, metas: list[dict[str, Any]]) -> Iterator:
        yield from respond(message, history, mode or "explain", list(metas or []))

    with gr.Blocks(title="Tutor del curso de LLMs", analytics_enabled=False) as app:
        gr.Markdown("## Tutor del curso de LLMs")
        for notice in notices or []:
            gr.Markdown(f"> {notice}")
        metas = gr.State([])
        mode = gr.Radio(MODES, value="explain", label="Modo", render=False)
        gr.ChatInterface(
            stream,
            chatbot=gr.Chatbot(value=[{"role": "assistant", "content": welcome}], label="Conversación"),
            textbox=gr.Textbox(placeholder="Escribe tu pregunta sobre el curso…", label="Pregunta"),
            additional_inputs=[mode, metas],
            additional_inputs_accordion=gr.Accordion("Modo: Explicar / Socrático", open=True),
            additional_outputs=[metas],
            api_name="chat",
            concurrency_limit=1,
        )
        gr.Markdown(_footer(tutor))
    return app


def _footer(tutor: Tutor) -> str:
    if tutor.model is None:
        who = "sin modelo generativo: las respuestas citan el curso"
    else:
        info = tutor.model.info()
        who = "modelo básico incluido (Gemma 3 270M)" if info.packaged else f"modelo {info.name}"
    return (
        f"<small>Responde: {who} · cada respuesta se verifica contra el curso y muestra sus fuentes · "
        "para usar un modelo mejor, vea «Configuring a better model» en el README.</small>"
    )
