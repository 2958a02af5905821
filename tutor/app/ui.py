"""The browser page (Gradio Blocks): a streaming chat with the tutor, answers with their sources.

`build_ui()` returns the Blocks and never launches it (`launch()` does). Each browser session keeps
its conversation in Gradio state, never in a module global: the turns the tutor reads (with each
reply's notes: id, mode, citations, hint step) and the chat as displayed. The one model is shared
through a first-come-first-served `Turnstile`, so a waiting student reads the course's own sentences
and their place in the queue instead of a frozen page. It holds no tutoring logic: it translates
between Gradio's widgets and `Tutor.plan()` / `Tutor.answer()`, and never renders raw HTML from a
message.
"""

import html
import logging
import re
import tempfile
import threading
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tutor.errors import TutorError
from tutor.pipeline import MODES, Answer, Tutor, clean_history, inert
from tutor.practice import mastery, mastery_markdown

log = logging.getLogger("tutor")
MODE_CHOICES = [("Explicar", "explain"), ("Socrático", "socratic"), ("Practicar", "practice")]
_CSS = """
.sr-only {position:absolute;width:1px;height:1px;padding:0;margin:-1px;overflow:hidden;clip:rect(0,0,0,0);border:0}
#tutor-chat code {border-radius:1em;padding:0.1em 0.6em;font-family:inherit}
#tutor-footer {font-size:0.85rem}
/* WCAG AA (4.5:1, tests/test_browser.py): the default theme's orange, red and grey text are lighter */
.gradio-container {--color-accent:#c2410c; --button-primary-background-fill:#c2410c;
  --button-primary-background-fill-hover:#9a3412; --button-cancel-background-fill:#b91c1c;
  --button-cancel-background-fill-hover:#991b1b; --block-info-text-color:#4b5563;
  --button-primary-text-color:#ffffff; --button-cancel-text-color:#ffffff}
"""


# Gradio draws a radio group as a <fieldset> without a legend: name it after its visible label so that
# screen readers announce "Modo" (and any other group) instead of an unnamed group.
_JS = """() => {
  new MutationObserver(() => document.querySelectorAll('fieldset:not([aria-label])').forEach(f => {
    const label = f.querySelector('[data-testid="block-info"]');
    if (label) f.setAttribute('aria-label', label.innerText);
  })).observe(document.documentElement, {childList: true, subtree: true});
}"""


class Turnstile:
    """First come, first served access to the one model; anyone can ask how many are ahead."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: deque[object] = deque()

    def join(self) -> object:
        ticket = object()
        with self._cond:
            self._queue.append(ticket)
        return ticket

    def wait(self, ticket: object, timeout: float) -> int:
        """Wait up to `timeout` s for the ticket's turn; return how many are still ahead of it."""
        with self._cond:
            if self._queue.index(ticket):
                self._cond.wait(timeout)
            return self._queue.index(ticket)

    def leave(self, ticket: object) -> None:
        with self._cond:
            if ticket in self._queue:
                self._queue.remove(ticket)
            self._cond.notify_all()


def conversation_markdown(turns: list[dict[str, Any]], title: str, extra: str = "") -> str:
    """The conversation as a Markdown document, each reply with its sources (they are in its text)."""
    lines = [f"# {title}", ""]
    for turn in turns:
        who = "Estudiante" if turn.get("role") == "user" else "Tutor"
        lines += [f"## {who}", "", str(turn.get("shown") or turn.get("content", "")), ""]
    if extra:
        lines += [extra, ""]
    return "\n".join(lines)


def _text(content: Any) -> str:
    """Gradio 6 gives a message's content as a list of parts; older shapes as a string."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _strings(root: Path) -> dict[str, dict[str, str]]:
    path = root / "ui.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return {lang: {k: str(v) for k, v in table.items()} for lang, table in data.items()}
    except (OSError, yaml.YAMLError, AttributeError) as exc:
        raise TutorError(f"prompts/ui.yaml no se puede leer ({exc}): restaure el archivo.") from exc


class Conversation:
    """One message through the tutor, for the page and for the API: yields (visible text, turns | None)."""

    def __init__(self, tutor: Tutor, store: Any = None) -> None:
        self.tutor, self.store, self.turnstile = tutor, store, Turnstile()
        self.cancels: dict[str, threading.Event] = {}  # per browser session: the stop button's flag

    def reply(
        self, message: str, mode: str, turns: Any, session: str = "", mastery: dict | None = None
    ) -> Iterator[tuple[str, list | None]]:
        tutor = self.tutor
        history = [dict(t) for t in clean_history(turns)]
        mode = mode if mode in MODES else "explain"
        cancel = self.cancels[session] = threading.Event()
        language, answer = "es", None
        ticket = self.turnstile.join()  # a place in the model's queue from arrival: first come, first served
        try:
            plan = tutor.plan(message, history, mode, mastery=mastery if mode == "practice" else None)
            language = plan.language
            replies = tutor.answer(plan, cancel)
            final = next(replies)
            if not final.final:
                yield final.text, None
                first = final
                while (ahead := self.turnstile.wait(ticket, 0.5)) and not cancel.is_set():  # only the model waits
                    notice = tutor.prompts.reply("queue_position", language, ahead=ahead)
                    yield f"_{notice}_\n\n{first.text}", None
                for final in replies:
                    yield final.text, None
            text, answer = final.text, final.answer
        except TutorError as exc:
            text = str(exc)
        except Exception:
            log.exception("unexpected error while answering")
            text = tutor.prompts.reply("error", language)
        finally:
            self.turnstile.leave(ticket)
            self.cancels.pop(session, None)
        meta = answer.meta if answer is not None else {"kind": "error", "language": language}
        # The tutor reads its own prose back (not the rendered reply, with its escaped HTML and sources);
        # "shown" is what the student saw, for the download.
        prose = answer.text if answer is not None else text
        history += [{"role": "user", "content": message, "meta": {}},
                    {"role": "assistant", "content": prose, "meta": meta, "shown": text}]  # fmt: skip
        self._record(answer)
        yield text, history

    def stop(self, session: str) -> None:
        if session in self.cancels:
            self.cancels[session].set()

    def feedback(self, answer_id: str, rating: str, comment: str = "", language: str = "es") -> str:
        prompts = self.tutor.prompts
        if rating not in ("up", "down") or not isinstance(answer_id, str) or not answer_id.strip():
            return prompts.reply("feedback_failed", language, reason="valoración no válida")
        if self.store is None:
            return prompts.reply("feedback_failed", language, reason="almacén desactivado")
        try:
            self.store.record_feedback(answer_id, rating, (comment or "")[:2000])
        except TutorError as exc:
            return prompts.reply("feedback_failed", language, reason=str(exc))
        return prompts.reply("feedback_thanks", language)

    def _record(self, answer: Answer | None) -> None:
        if self.store is None or answer is None:
            return
        try:
            self.store.record_answer(answer)
        except TutorError as exc:  # the chat goes on without analytics
            log.warning("answer not recorded: %s", exc)


def build_ui(tutor: Tutor, *, settings: Any = None, store: Any = None, notices: list[str] | None = None) -> Any:
    import gradio as gr

    strings = _strings(tutor.prompts.root)
    i18n = gr.I18n(**strings)
    es = strings["es"]
    conversation = Conversation(tutor, store)
    welcome = tutor.prompts.get("replies/es/welcome")
    intro = tutor.prompts.reply("welcome", "es").split("\n\n")[0]
    suggestions = [str(s) for s in welcome.meta.get("suggestions", [])][:6]
    modes = MODE_CHOICES

    def submit(message: str, chat: list, mode: str, turns: list, baseline: dict, request: gr.Request):
        message = (message or "").strip()
        if not message:
            yield (gr.skip(),) * 7
            return
        chat = [*chat, {"role": "user", "content": inert(message)}, {"role": "assistant", "content": "…"}]
        yield chat, turns, "", "", gr.skip(), gr.skip(), gr.skip()
        for text, done in conversation.reply(message, mode, turns, _session(request), baseline):
            chat[-1] = {"role": "assistant", "content": text}
            if done is None:
                yield chat, turns, gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
            else:
                turns = done
                table, shown = progress_of(turns, baseline)
                live_text = _live(text, len(turns) // 2)
                yield chat, turns, gr.skip(), live_text, _download(turns, shown), shown, table

    def suggested(selection: gr.SelectData, chat: list, mode: str, turns: list, baseline: dict, request: gr.Request):
        yield from submit(str(selection.value.get("text", "")), chat, mode, turns, baseline, request)

    def progress_of(turns: list, baseline: dict) -> tuple[dict, str]:
        """This browser's mastery: earlier sessions (kept in the browser) plus this conversation."""
        table = mastery([t.get("meta") or {} for t in turns if isinstance(t, dict)], previous=baseline or {})
        titles = {c.section_id: c.section_title for c in tutor.retriever.index.chunks.values()} if table else {}
        return table, mastery_markdown(table, _language(turns), prompts=tutor.prompts, titles=titles)

    def restore(kept: dict):
        table, shown = progress_of([], kept if isinstance(kept, dict) else {})
        return table, shown

    def stop(request: gr.Request) -> None:
        conversation.stop(_session(request))

    def like(data: gr.LikeData, turns: list):
        meta = _meta_at(turns, data.index)
        rating = "up" if data.liked else "down"
        status = conversation.feedback(meta.get("id", ""), rating, language=_language(turns))
        return meta.get("id", ""), gr.update(visible=rating == "down"), status

    def comment(answer_id: str, text: str, turns: list):
        status = conversation.feedback(answer_id, "down", text, language=_language(turns))
        return gr.update(visible=False), "", status

    def new_conversation(kept: dict):
        # What was practised so far becomes the baseline of the next conversation (never counted twice).
        return [], [], "", gr.update(visible=False), "", None, kept if isinstance(kept, dict) else {}

    def _download(turns: list, progress: str = "") -> Any:
        path = Path(tempfile.mkdtemp(prefix="tutor-")) / "conversacion-tutor.md"
        path.write_text(conversation_markdown(turns, es["title"], progress), encoding="utf-8")
        return gr.update(value=str(path), interactive=True)

    with gr.Blocks(title=es["title"], analytics_enabled=False, fill_height=True) as app:
        gr.Markdown(f"## {es['title']}")
        for notice in notices or []:
            gr.Markdown(f"> {notice}")
        turns = gr.State([])
        baseline = gr.State({})  # mastery from earlier sessions in this browser
        kept = gr.BrowserState({}, storage_key="tutor-mastery")  # localStorage: survives a reload, no account
        with gr.Tabs():
            with gr.Tab(i18n("conversation")):
                mode = gr.Radio(modes, value="explain", label=i18n("mode"), info=i18n("mode_help"),
                                elem_id="tutor-mode")  # fmt: skip
                chatbot = gr.Chatbot(
                    label=i18n("conversation"), elem_id="tutor-chat", height=520, placeholder=intro,
                    examples=[{"text": s} for s in suggestions], sanitize_html=True,
                    feedback_options=("Like", "Dislike"), buttons=["copy"],
                )  # fmt: skip
                live = gr.HTML("", elem_id="tutor-live", elem_classes="sr-only")
                with gr.Row():
                    box = gr.Textbox(label=i18n("question"), placeholder=i18n("placeholder"), scale=8,
                                     max_lines=6, autofocus=True, elem_id="tutor-question")  # fmt: skip
                    send = gr.Button(i18n("send"), variant="primary", scale=1, elem_id="tutor-send")
                    halt = gr.Button(i18n("stop"), variant="stop", scale=1, elem_id="tutor-stop")
                with gr.Row(visible=False) as comment_row:
                    answer_id = gr.State("")
                    comment_box = gr.Textbox(label=i18n("comment"), scale=8, max_lines=4, elem_id="tutor-comment")
                    comment_send = gr.Button(i18n("comment_send"), scale=1)
                status = gr.Markdown("", elem_id="tutor-status")
                with gr.Accordion(i18n("mastery"), open=False, elem_id="tutor-progress-panel"):
                    progress = gr.Markdown("", elem_id="tutor-progress")
                with gr.Row():
                    fresh = gr.Button(i18n("new"), elem_id="tutor-new")
                    download = gr.DownloadButton(i18n("download"), interactive=False, elem_id="tutor-download")
            if settings is not None and getattr(settings, "instructor_password", None):
                from tutor.app.instructor import build_instructor_tab

                build_instructor_tab(tutor, settings, store)  # a sibling tab, behind its login
        gr.Markdown(_footer(tutor), elem_id="tutor-footer")

        outputs = [chatbot, turns, box, live, download, progress, kept]
        students = getattr(settings, "max_students", 64)
        private = {"api_visibility": "private", "concurrency_limit": students, "concurrency_id": "chat"}
        send.click(submit, [box, chatbot, mode, turns, baseline], outputs, **private)
        box.submit(submit, [box, chatbot, mode, turns, baseline], outputs, **private)
        chatbot.example_select(suggested, [chatbot, mode, turns, baseline], outputs, **private)
        # Stop sets the session's flag: generation ends at the next token, the course's sentences stay.
        halt.click(stop, None, None, api_visibility="private", queue=False)
        chatbot.like(like, [turns], [answer_id, comment_row, status], api_visibility="private")
        comment_send.click(comment, [answer_id, comment_box, turns], [comment_row, comment_box, status],
                           api_visibility="private")  # fmt: skip
        fresh.click(new_conversation, [kept], [chatbot, turns, box, comment_row, status, download, baseline],
                    api_visibility="private", queue=False)  # fmt: skip
        # The chat's own bin button starts over too: the turns the tutor reads must follow what is shown.
        chatbot.clear(new_conversation, [kept], [chatbot, turns, box, comment_row, status, download, baseline],
                      api_visibility="private", queue=False)  # fmt: skip

        # The programmatic API (gradio_client): one conversation turn, and feedback on an answer.
        def chat(message: str, mode: str, history: list, request: gr.Request):
            """Answer `message`; `history` is the list of turns this endpoint returned last time."""
            for text, done in conversation.reply(str(message or ""), mode, history or [], _session(request)):
                yield text, done if done is not None else history

        def feedback(answer_id: str, rating: str, comment: str) -> str:
            """Store a thumbs up ("up") or down ("down") on the answer with this id, with a comment."""
            return conversation.feedback(answer_id, rating, comment)

        # Mode and history have defaults: `predict(message, api_name="/chat")` starts a conversation.
        api_message = gr.Textbox(visible=False, label="message")
        api_mode = gr.Textbox("explain", visible=False, label="mode")
        api_history = gr.JSON([], visible=False, label="history")
        api_reply, api_turns = gr.Textbox(visible=False, label="reply"), gr.JSON(visible=False, label="turns")
        api_button = gr.Button(visible=False)
        api_button.click(chat, [api_message, api_mode, api_history], [api_reply, api_turns], api_name="chat",
                         concurrency_limit=students, concurrency_id="chat")  # fmt: skip
        gr.api(feedback, api_name="feedback")
        app.load(restore, [kept], [baseline, progress], api_visibility="private", queue=False)

    app.tutor_i18n = i18n
    app.tutor_css = _CSS
    return app


def launch(app: Any, settings: Any, **kwargs: Any) -> None:
    """Serve on the configured loopback address: no share link, no analytics, no request leaves."""
    app.queue(default_concurrency_limit=1, max_size=None)
    # Waiting students hold a worker thread each (reading their place in the queue): room for all of them.
    kwargs.setdefault("max_threads", settings.max_students + 16)
    # Gradio keeps every session's values in memory up to a capacity (10,000 by default): bound it to the
    # class, the oldest idle sessions go first. Its run history is off (it offers uploading runs to a hub).
    kwargs.setdefault("state_session_capacity", settings.max_students * 8)
    kwargs.setdefault("run_history", False)
    kwargs.setdefault("footer_links", [])
    app.launch(server_name=settings.host, server_port=settings.port, share=False, i18n=app.tutor_i18n,
               css=app.tutor_css, js=_JS, **kwargs)  # fmt: skip


def open_store(settings: Any) -> tuple[Any, list[str]]:
    """The local feedback and analytics store, or None with a notice: the chat works without it."""
    try:
        from tutor.app.store import Store

        return Store.open(settings), []
    except ImportError:
        return None, []
    except TutorError as exc:
        return None, [f"{exc} Las valoraciones no se guardarán en esta sesión."]


def _session(request: Any) -> str:
    return str(getattr(request, "session_hash", "") or "")


def _meta_at(turns: list, index: Any) -> dict[str, Any]:
    """The notes of the reply at chat position `index` (the chat shows the turns one for one)."""
    position = index[0] if isinstance(index, (list, tuple)) else index
    if isinstance(position, int) and 0 <= position < len(turns) and isinstance(turns[position], dict):
        return turns[position].get("meta") or {}
    return {}


def _language(turns: list) -> str:
    for turn in reversed(turns or []):
        language = (turn.get("meta") or {}).get("language") if isinstance(turn, dict) else None
        if language:
            return language
    return "es"


def _live(text: str, replies: int) -> str:
    """The finished reply for screen readers: an ARIA live region, as plain escaped text."""
    plain = html.unescape(re.sub(r"<[^>]+>", " ", text))
    return f'<div role="status" aria-live="polite" data-replies="{replies}">{html.escape(plain)}</div>'


def _footer(tutor: Tutor) -> str:
    if tutor.model is None:
        who = "sin modelo generativo: las respuestas citan el curso"
    else:
        info = tutor.model.info()
        who = "modelo básico incluido (Gemma 3 270M)" if info.packaged else f"modelo {info.name}"
    return (
        f"Responde: {who} · cada respuesta se verifica contra el curso y muestra sus fuentes · "
        "para usar un modelo mejor, vea «Configuring a better model» en el README."
    )
