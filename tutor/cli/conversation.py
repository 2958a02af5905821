"""`tutor ask | chat | serve`: the tutor itself, one question, a terminal conversation, the browser app."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tutor.cli.common import open_tutor, read_history

if TYPE_CHECKING:
    from tutor.config import Settings
    from tutor.pipeline import Answer, Plan


def add_parsers(sub: Any) -> None:
    """ask, chat, serve: added to the CLI's subparsers."""
    p = sub.add_parser("ask", help="hace una pregunta al tutor y muestra la respuesta verificada")
    p.add_argument("question")
    p.add_argument("--mode", choices=["explain", "socratic"], default="explain")
    p.add_argument("--history", type=Path, help="archivo JSON con los turnos anteriores [{role, content}]")
    p.add_argument("--json", action="store_true", help="un objeto JSON en stdout")
    p.add_argument("--show-prompt", action="store_true", help="muestra el prompt exacto que ve el modelo")
    p.add_argument("--model", choices=["auto", "echo", "none"], default="auto",
                   help="auto: el modelo configurado; none: solo respuestas citadas del curso")  # fmt: skip
    p.set_defaults(run=cmd_ask)

    p = sub.add_parser("chat", help="conversa con el tutor en la terminal")
    p.add_argument("--mode", choices=["explain", "socratic"], default="explain")
    p.add_argument("--model", choices=["auto", "echo", "none"], default="auto")
    p.set_defaults(run=cmd_chat)

    p = sub.add_parser("serve", help="abre el tutor en el navegador")
    p.add_argument("--host", default=None)
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--model", choices=["auto", "echo", "none"], default="auto",
                   help="echo: sin modelo, para trabajar en la interfaz; none: solo respuestas citadas")  # fmt: skip
    p.set_defaults(run=cmd_serve)


def cmd_ask(args: argparse.Namespace, settings: Settings) -> int:
    history = read_history(args.history) if args.history else []
    tutor, _ = open_tutor(settings, args.model)
    plan = tutor.plan(args.question, history, args.mode)
    if args.show_prompt and not args.json:
        print(_show_prompt(plan), end="\n\n")
    final = None
    for reply in tutor.answer(plan):
        final = reply
    assert final is not None and final.answer is not None
    answer = final.answer
    if args.json:
        print(json.dumps(_answer_json(answer, show_prompt=args.show_prompt), ensure_ascii=False))
    else:
        print(final.text)
    return 0


def cmd_chat(args: argparse.Namespace, settings: Settings) -> int:
    tutor, _ = open_tutor(settings, args.model)
    history: list[dict[str, Any]] = []
    print(tutor.prompts.reply("welcome", "es"))
    print("\n(Ctrl-D para salir; /socratico o /explicar cambia el modo)")
    mode = args.mode
    while True:
        try:
            question = input("\n> ").strip()
        except EOFError:
            print()
            return 0
        if question in ("/socratico", "/socrático", "/explicar"):
            mode = "explain" if question == "/explicar" else "socratic"
            print(f"Modo: {mode}")
            continue
        if not question:
            continue
        shown = ""
        for reply in tutor.answer(tutor.plan(question, history, mode)):
            if not reply.final and not shown:
                print("(buscando en el curso…)", flush=True)
            shown = reply.text
            if reply.final and reply.answer is not None:
                print(reply.text)
                history.append({"role": "user", "content": question})
                history.append({"role": "assistant", "content": reply.answer.text, "meta": reply.answer.meta})


def _show_prompt(plan: Plan) -> str:
    from tutor.types import TextPrompt

    if plan.prompt is None:
        return f"(sin prompt: la respuesta «{plan.kind}» se decide sin el modelo)"
    if isinstance(plan.prompt, TextPrompt):
        return plan.prompt.text
    return "\n\n".join(f"### {m.role}\n{m.content}" for m in plan.prompt.messages)


def _answer_json(answer: Answer, *, show_prompt: bool = False) -> dict[str, Any]:
    plan = answer.plan
    out = {
        "question": plan.question,
        "language": plan.language,
        "gate": {
            "label": plan.gate.label,
            "score": round(float(plan.gate.score), 4),
            "reason": plan.gate.reason,
        },
        "kind": plan.kind,
        "answer": answer.text,
        "citations": list(answer.citations),
        "excerpts": [
            {"section": p.section_id, "title": p.chunk.section_title, "text": p.chunk.text} for p in plan.passages
        ],  # fmt: skip
        "verified": answer.verified,
        "fallback": answer.fallback,
        "removed": [{"sentence": s, "why": why} for s, why in answer.removed],
        "notice": answer.notice,  # why the course's sentences are shown instead of the model's text
        "general": answer.general,  # outside the course, not checked against it (TUTOR_GENERAL_ANSWERS)
        "mode": plan.mode,
        "timings": {
            k: answer.timings.get(k) for k in ("gate_ms", "retrieve_ms", "ttft_ms", "first_visible_ms", "total_ms")
        },  # fmt: skip
    }
    if show_prompt:
        out["prompt"] = _show_prompt(plan)
    return out


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import signal

    from tutor.app.heap import limit_arenas
    from tutor.app.lock import acquire
    from tutor.app.ui import build_ui, launch, open_store

    acquire(settings.data_dir, "serve")  # one app per data folder, held until the process ends
    limit_arenas(settings.malloc_arenas)  # before Gradio's worker threads each grow an arena of their own
    # SIGTERM (systemd, docker stop, kill) stops the app like Ctrl-C: Gradio closes its server and
    # open files are closed by their `finally`/`with`, instead of dying between two writes.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    tutor, notices = open_tutor(settings, args.model)

    def shut_down(signum: int, frame: object) -> None:
        tutor.stopping.set()  # a reply being generated ends now, with the course's sentences
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, shut_down)
    signal.signal(signal.SIGINT, shut_down)
    store, store_notices = open_store(settings)
    app = build_ui(tutor, settings=settings, store=store, notices=notices + store_notices)
    print(f"Tutor en http://{settings.host}:{settings.port}  (Ctrl-C para salir)")
    launch(app, settings)
    return 0
