"""The browser page (Gradio Blocks): a streaming chat with the tutor, answers with their sources.

`build_ui()` returns the Blocks and never launches it (`launch()` does). Each browser session keeps
its conversation in Gradio state, never in a module global: the turns the tutor reads (with each
reply's notes: id, mode, citations, hint step) and the chat as displayed. The one model is shared
through a first-come-first-served `Turnstile`, so a waiting student reads the course's own sentences
and their place in the queue instead of a frozen page. It holds no tutoring logic: it translates
between Gradio's widgets and `Tutor.plan()` / `Tutor.answer()`, and never renders raw HTML from a
message.
"""

from __future__ import annotations

import html
import logging
import re
import tempfile
import threading
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import gradio as gr
import yaml

from tutor.errors import TutorError
from tutor.pipeline import MODES, Answer, Tutor, clean_history, inert
from tutor.practice import mastery, mastery_markdown

if TYPE_CHECKING:
    from tutor.app.store import Store
    from tutor.config import Settings

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

    def __init__(self, tutor: Tutor, store: Store | None = None) -> None:
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


class ChatPage:
    """The chat page's event handlers, over one Conversation; what each browser session has is passed in
    (Gradio state), never kept here."""

    def __init__(self, tutor: Tutor, store: Store | None, strings: dict[str, str]) -> None:
        self.tutor, self.strings = tutor, strings
        self.conversation = Conversation(tutor, store)

    def submit(self, message: str, chat: list, mode: str, turns: list, baseline: dict,
               request: gr.Request) -> Iterator[tuple[Any, ...]]:  # fmt: skip
        message = (message or "").strip()
        if not message:
            yield (gr.skip(),) * 7
            return
        chat = [*chat, {"role": "user", "content": inert(message)}, {"role": "assistant", "content": "…"}]
        yield chat, turns, "", "", gr.skip(), gr.skip(), gr.skip()
        for text, done in self.conversation.reply(message, mode, turns, _session(request), baseline):
            chat[-1] = {"role": "assistant", "content": text}
            if done is None:
                yield chat, turns, gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
            else:
                turns = done
                table, shown = self.progress_of(turns, baseline)
                live_text = _live(text, len(turns) // 2)
                yield chat, turns, gr.skip(), live_text, self.download(turns, shown), shown, table

    def suggested(self, selection: gr.SelectData, chat: list, mode: str, turns: list, baseline: dict,
                  request: gr.Request) -> Iterator[tuple[Any, ...]]:  # fmt: skip
        yield from self.submit(str(selection.value.get("text", "")), chat, mode, turns, baseline, request)

    def progress_of(self, turns: list, baseline: dict) -> tuple[dict, str]:
        """This browser's mastery: earlier sessions (kept in the browser) plus this conversation."""
        table = mastery([t.get("meta") or {} for t in turns if isinstance(t, dict)], previous=baseline or {})
        chunks = self.tutor.retriever.index.chunks.values()
        titles = {c.section_id: c.section_title for c in chunks} if table else {}
        return table, mastery_markdown(table, _language(turns), prompts=self.tutor.prompts, titles=titles)

    def restore(self, kept: dict) -> tuple[dict, str]:
        return self.progress_of([], kept if isinstance(kept, dict) else {})

    def stop(self, request: gr.Request) -> None:
        self.conversation.stop(_session(request))

    def like(self, data: gr.LikeData, turns: list) -> tuple[Any, ...]:
        meta = _meta_at(turns, data.index)
        rating = "up" if data.liked else "down"
        status = self.conversation.feedback(meta.get("id", ""), rating, language=_language(turns))
        return meta.get("id", ""), gr.update(visible=rating == "down"), status

    def comment(self, answer_id: str, text: str, turns: list) -> tuple[Any, ...]:
        status = self.conversation.feedback(answer_id, "down", text, language=_language(turns))
        return gr.update(visible=False), "", status

    def new_conversation(self, kept: dict) -> tuple[Any, ...]:
        # What was practised so far becomes the baseline of the next conversation (never counted twice).
        return [], [], "", gr.update(visible=False), "", None, kept if isinstance(kept, dict) else {}

    def download(self, turns: list, progress: str = "") -> Any:
        path = Path(tempfile.mkdtemp(prefix="tutor-")) / "conversacion-tutor.md"
        path.write_text(conversation_markdown(turns, self.strings["title"], progress), encoding="utf-8")
        return gr.update(value=str(path), interactive=True)

    # The programmatic API (gradio_client): one conversation turn, and feedback on an answer.
    def chat(self, message: str, mode: str, history: list, request: gr.Request) -> Iterator[tuple[str, list]]:
        """Answer `message`; `history` is the list of turns this endpoint returned last time."""
        for text, done in self.conversation.reply(str(message or ""), mode, history or [], _session(request)):
            yield text, done if done is not None else history

    def feedback(self, answer_id: str, rating: str, comment: str) -> str:
        """Store a thumbs up ("up") or down ("down") on the answer with this id, with a comment."""
        return self.conversation.feedback(answer_id, rating, comment)


def build_ui(tutor: Tutor, *, settings: Settings | None = None, store: Store | None = None,
             notices: list[str] | None = None) -> gr.Blocks:  # fmt: skip
    """The page: the chat tab (and the instructor tab when a password is set), wired to a ChatPage."""
    strings = _strings(tutor.prompts.root)
    i18n = gr.I18n(**strings)
    es = strings["es"]
    page = ChatPage(tutor, store, es)
    with gr.Blocks(title=es["title"], analytics_enabled=False, fill_height=True) as app:
        gr.Markdown(f"## {es['title']}")
        for notice in notices or []:
            gr.Markdown(f"> {notice}")
        state = SimpleNamespace(
            turns=gr.State([]),
            baseline=gr.State({}),  # mastery from earlier sessions in this browser
            kept=gr.BrowserState({}, storage_key="tutor-mastery"),  # localStorage: survives a reload, no account
        )
        with gr.Tabs():
            with gr.Tab(i18n("conversation")):
                widgets = _chat_widgets(tutor, i18n)
            if settings is not None and settings.instructor_password:
                from tutor.app.instructor import build_instructor_tab

                build_instructor_tab(tutor, settings, store)  # a sibling tab, behind its login
        gr.Markdown(_footer(tutor), elem_id="tutor-footer")
        students = settings.max_students if settings is not None else 64
        _wire_chat(page, widgets, state, students)
        _api(page, students)
        app.load(page.restore, [state.kept], [state.baseline, widgets.progress], api_visibility="private",
                 queue=False)  # fmt: skip
    app.tutor_i18n = i18n
    app.tutor_css = _CSS
    return app


def _chat_widgets(tutor: Tutor, i18n: Any) -> SimpleNamespace:
    """The conversation tab's widgets: mode, chat, question box and buttons, feedback, progress."""
    welcome = tutor.prompts.get("replies/es/welcome")
    intro = tutor.prompts.reply("welcome", "es").split("\n\n")[0]
    suggestions = [str(s) for s in welcome.meta.get("suggestions", [])][:6]
    w = SimpleNamespace()
    w.mode = gr.Radio(MODE_CHOICES, value="explain", label=i18n("mode"), info=i18n("mode_help"),
                      elem_id="tutor-mode")  # fmt: skip
    w.chatbot = gr.Chatbot(
        label=i18n("conversation"), elem_id="tutor-chat", height=520, placeholder=intro,
        examples=[{"text": s} for s in suggestions], sanitize_html=True,
        feedback_options=("Like", "Dislike"), buttons=["copy"],
    )  # fmt: skip
    w.live = gr.HTML("", elem_id="tutor-live", elem_classes="sr-only")
    with gr.Row():
        w.box = gr.Textbox(label=i18n("question"), placeholder=i18n("placeholder"), scale=8,
                           max_lines=6, autofocus=True, elem_id="tutor-question")  # fmt: skip
        w.send = gr.Button(i18n("send"), variant="primary", scale=1, elem_id="tutor-send")
        w.halt = gr.Button(i18n("stop"), variant="stop", scale=1, elem_id="tutor-stop")
    with gr.Row(visible=False) as w.comment_row:
        w.answer_id = gr.State("")
        w.comment_box = gr.Textbox(label=i18n("comment"), scale=8, max_lines=4, elem_id="tutor-comment")
        w.comment_send = gr.Button(i18n("comment_send"), scale=1)
    w.status = gr.Markdown("", elem_id="tutor-status")
    with gr.Accordion(i18n("mastery"), open=False, elem_id="tutor-progress-panel"):
        w.progress = gr.Markdown("", elem_id="tutor-progress")
    with gr.Row():
        w.fresh = gr.Button(i18n("new"), elem_id="tutor-new")
        w.download = gr.DownloadButton(i18n("download"), interactive=False, elem_id="tutor-download")
    return w


def _wire_chat(page: ChatPage, w: SimpleNamespace, state: SimpleNamespace, students: int) -> None:
    """The page's events; every one that reaches the model shares the "chat" concurrency group."""
    outputs = [w.chatbot, state.turns, w.box, w.live, w.download, w.progress, state.kept]
    inputs = [w.box, w.chatbot, w.mode, state.turns, state.baseline]
    private = {"api_visibility": "private", "concurrency_limit": students, "concurrency_id": "chat"}
    w.send.click(page.submit, inputs, outputs, **private)
    w.box.submit(page.submit, inputs, outputs, **private)
    w.chatbot.example_select(page.suggested, inputs[1:], outputs, **private)
    # Stop sets the session's flag: generation ends at the next token, the course's sentences stay.
    w.halt.click(page.stop, None, None, api_visibility="private", queue=False)
    w.chatbot.like(page.like, [state.turns], [w.answer_id, w.comment_row, w.status], api_visibility="private")
    w.comment_send.click(page.comment, [w.answer_id, w.comment_box, state.turns], [w.comment_row, w.comment_box,
                         w.status], api_visibility="private")  # fmt: skip
    cleared = [w.chatbot, state.turns, w.box, w.comment_row, w.status, w.download, state.baseline]
    w.fresh.click(page.new_conversation, [state.kept], cleared, api_visibility="private", queue=False)
    # The chat's own bin button starts over too: the turns the tutor reads must follow what is shown.
    w.chatbot.clear(page.new_conversation, [state.kept], cleared, api_visibility="private", queue=False)


def _api(page: ChatPage, students: int) -> None:
    """`/chat` and `/feedback` for gradio_client. Mode and history have defaults:
    `predict(message, api_name="/chat")` starts a conversation."""
    api_message = gr.Textbox(visible=False, label="message")
    api_mode = gr.Textbox("explain", visible=False, label="mode")
    api_history = gr.JSON([], visible=False, label="history")
    api_reply, api_turns = gr.Textbox(visible=False, label="reply"), gr.JSON(visible=False, label="turns")
    api_button = gr.Button(visible=False)
    api_button.click(page.chat, [api_message, api_mode, api_history], [api_reply, api_turns], api_name="chat",
                     concurrency_limit=students, concurrency_id="chat")  # fmt: skip
    gr.api(page.feedback, api_name="feedback")


def launch(app: gr.Blocks, settings: Settings, **kwargs: Any) -> None:
    """Serve on the configured loopback address: no share link, no analytics, no request leaves."""
    app.queue(default_concurrency_limit=1, max_size=None)
    # Waiting students hold a worker thread each (reading their place in the queue): room for all of them.
    kwargs.setdefault("max_threads", settings.max_students + 16)
    # Gradio keeps every session's values in memory up to a capacity (10,000 by default): bound it to the
    # class, the oldest idle sessions go first. Its run history is off (it offers uploading runs to a hub).
    kwargs.setdefault("state_session_capacity", settings.max_students * 8)
    kwargs.setdefault("run_history", False)
    kwargs.setdefault("footer_links", [])
    # build_ui() leaves the page's translations and CSS on the Blocks: Gradio 6 takes them at launch.
    i18n, css = getattr(app, "tutor_i18n", None), getattr(app, "tutor_css", None)
    app.launch(server_name=settings.host, server_port=settings.port, share=False, i18n=i18n, css=css, js=_JS,
               **kwargs)  # fmt: skip


def open_store(settings: Settings) -> tuple[Store | None, list[str]]:
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
    """What answers and how: the generator loaded, the model set and why (issue 16), the promise."""
    from tutor.capable import footer_text

    if tutor.model is None:
        who = "sin modelo generativo: las respuestas citan el curso"
    else:
        info = tutor.model.info()
        who = "modelo básico incluido (Gemma 3 270M)" if info.packaged else f"modelo {info.name}"
    return (
        f"Responde: {who} · {footer_text(tutor.settings)} · cada respuesta se verifica contra el curso y "
        "muestra sus fuentes."
    )
