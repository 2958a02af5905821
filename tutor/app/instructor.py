"""The instructor panel: a password-protected tab to edit templates, manage the course, read analytics.

`build_instructor_tab()` adds one "Instructor" tab to the caller's gr.Blocks. A correct password
gives the browser session a random token (kept in gr.State on the server); every panel handler
checks it again, so calling an endpoint directly without logging in is refused. Wrong passwords
are rate-limited per client address. Uploaded files are checked (extension, content, size, name)
before they reach the knowledge folder. It does not answer students (ui.py), hold analytics SQL
(store.py) or know how templates are parsed (prompts.py validates them). It is longer than most
modules because three panels' widgets share one login and one error path.
"""

from __future__ import annotations

import hmac
import html
import inspect
import logging
import re
import secrets
import shutil
import tempfile
import threading
import time
import unicodedata
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr  # imported only when the panel is built (ui.py imports this module lazily)
import pandas as pd  # type: ignore[import-untyped]

from tutor.errors import TutorError
from tutor.ingest import SUFFIXES, knowledge_files
from tutor.text import write_atomic

if TYPE_CHECKING:
    from tutor.app.store import Store
    from tutor.config import Settings
    from tutor.pipeline import Tutor
    from tutor.prompts import PromptLibrary

log = logging.getLogger("tutor")

SAMPLE_QUESTION = "¿Qué es RAG y para qué sirve?"
_SAMPLE_VALUES = {"context": "[§4.3.1 ¿Qué es RAG?]\nRAG combina un sistema de recuperación con un modelo generativo.",
                  "language_name": "español", "sections": "§4.3.1 ¿Qué es RAG?", "section": "4.3.1",
                  "title": "¿Qué es RAG?", "term": "RAG", "terms": "RAG", "hint": "RAG combina…",
                  "question_label": "Pregunta", "answer_label": "Respuesta"}  # fmt: skip
_MAX_NAME = 120
_NAME_CHARS = re.compile(r"[\w\- .,()]+")  # \w: letters and digits of any script, and _


class UploadRefused(TutorError):
    """An uploaded file that may not enter the knowledge folder; the message says why, in Spanish."""


class LoginGuard:
    """Refuses logins from an address after `max_failures` wrong passwords within `window` seconds.

    `clock` gives the time in seconds (time.monotonic; a test passes its own to end a lockout at once)."""

    def __init__(self, max_failures: int = 5, window: float = 60.0, lockout: float = 300.0, *,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.max_failures, self.window, self.lockout, self.clock = max_failures, window, lockout, clock
        self._failures: dict[str, deque[float]] = {}
        self._locked_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def wait(self, key: str) -> float:
        """Seconds this address must still wait before trying again (0 = it may try now)."""
        with self._lock:
            return max(0.0, self._locked_until.get(key, 0.0) - self.clock())

    def failed(self, key: str) -> None:
        """Count a wrong password; the address is locked out when too many fall within the window."""
        now = self.clock()
        with self._lock:
            recent = self._failures.setdefault(key, deque())
            recent.append(now)
            while recent and recent[0] < now - self.window:
                recent.popleft()
            if len(recent) >= self.max_failures:
                self._locked_until[key] = now + self.lockout
                recent.clear()

    def succeeded(self, key: str) -> None:
        """A right password forgets the address's earlier failures."""
        with self._lock:
            self._failures.pop(key, None)


class Sessions:
    """Tokens of logged-in browser sessions, valid for `ttl` seconds."""

    def __init__(self, ttl: float = 8 * 3600) -> None:
        self.ttl = ttl
        self._expires: dict[str, float] = {}
        self._lock = threading.Lock()

    def new(self) -> str:
        """A fresh unguessable token for a session that just logged in."""
        token = secrets.token_urlsafe(32)
        with self._lock:
            now = time.monotonic()
            self._expires = {t: e for t, e in self._expires.items() if e > now}
            self._expires[token] = now + self.ttl
        return token

    def valid(self, token: Any) -> bool:
        """Whether `token` belongs to a logged-in session that has not expired."""
        with self._lock:
            return isinstance(token, str) and self._expires.get(token, 0.0) > time.monotonic()

    def end(self, token: Any) -> None:
        """Log the session out."""
        with self._lock:
            self._expires.pop(token, None)


def safe_upload_name(name: str) -> str:
    """The file name to store an upload under; UploadRefused for paths, hidden or odd names."""
    name = unicodedata.normalize("NFC", str(name or "")).strip()
    if not name:
        raise UploadRefused("El archivo no tiene nombre.")
    if "/" in name or "\\" in name or name in (".", "..") or ".." in name.split("."):
        raise UploadRefused(f"Nombre de archivo no permitido «{name}»: no puede contener rutas ni «/», «\\» o «..».")
    if name.startswith("."):
        raise UploadRefused(f"Nombre de archivo no permitido «{name}»: los archivos ocultos (que empiezan por «.») "
                            "no se aceptan.")  # fmt: skip
    if len(name) > _MAX_NAME or any(unicodedata.category(c).startswith("C") for c in name):
        raise UploadRefused(f"Nombre de archivo no permitido: use un nombre corto sin caracteres de control "
                            f"(máximo {_MAX_NAME} caracteres).")  # fmt: skip
    if not _NAME_CHARS.fullmatch(name):
        raise UploadRefused(
            f"Nombre de archivo no permitido «{name}»: use solo letras, números, espacios y - _ . , ( )."
        )
    if Path(name).suffix.lower() not in SUFFIXES:
        raise UploadRefused(f"«{name}»: solo se aceptan archivos .md, .txt o .pdf.")
    return name


def check_upload(name: str, path: Path, max_bytes: int) -> str:
    """Check one uploaded file (name, size, content matching its extension); the name to store it under."""
    safe = safe_upload_name(name)
    size = path.stat().st_size
    if size > max_bytes:
        raise UploadRefused(f"«{safe}» ocupa {size / 1e6:.1f} MB; el límite es {max_bytes / 1e6:.1f} MB "
                            "(TUTOR_UPLOAD_MAX_MB).")  # fmt: skip
    if size == 0:
        raise UploadRefused(f"«{safe}» está vacío.")
    with path.open("rb") as handle:
        head = handle.read(8192)
    if safe.lower().endswith(".pdf"):
        if not head.startswith(b"%PDF-"):
            raise UploadRefused(f"«{safe}» no es un PDF (su contenido no empieza por %PDF-).")
        return safe
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise UploadRefused(f"«{safe}» no es texto UTF-8: guárdelo como UTF-8 y vuelva a subirlo.") from None
    if "\x00" in text:
        raise UploadRefused(f"«{safe}» no es un archivo de texto (contiene bytes nulos).")
    return safe


def save_template(library: PromptLibrary, name: str, text: str, backups: Path) -> Path:
    """Validate, back up the current file, write atomically; the library serves the new text at once."""
    if name not in library.names():
        raise TutorError(f"No existe la plantilla «{name}».")
    library.validate(name, text)  # PromptTemplateError names the file and the line
    path = library.root / f"{name}.md"
    backups.mkdir(parents=True, exist_ok=True)
    backup = backups / f"{name.replace('/', '__')}.{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 10**6}.md"
    shutil.copy2(path, backup)
    write_atomic(path, text.encode("utf-8"))
    library.reload(name)
    return backup


class Material:
    """The knowledge folder as the panel sees it: sources with section counts, add, remove, re-index."""

    def __init__(self, tutor: Tutor, settings: Settings) -> None:
        self.tutor, self.settings = tutor, settings
        self._lock = threading.Lock()  # one re-index at a time

    def sources(self) -> list[list[Any]]:
        folder = self.settings.knowledge_dir
        chunks = list(self.tutor.retriever.index.chunks.values())
        rows = []
        for path in knowledge_files(folder):
            name = path.relative_to(folder).as_posix()
            mine = [c for c in chunks if c.source == name]
            rows.append([name, len({c.section_id for c in mine}), len(mine), round(path.stat().st_size / 1024, 1)])
        return rows

    def add(self, files: list[tuple[str, Path]]) -> tuple[list[str], list[str]]:
        """Copy the accepted uploads into the folder; (stored names, refusals)."""
        folder, stored, refused = self.settings.knowledge_dir, [], []
        limit = int(self.settings.upload_max_mb * 1024 * 1024)
        for name, path in files:
            try:
                safe = check_upload(name, path, limit)
            except UploadRefused as exc:
                refused.append(str(exc))
                continue
            target = folder / safe
            if target.resolve().parent != folder.resolve():  # belt and braces: safe names have no path
                refused.append(f"Nombre de archivo no permitido «{name}».")
                continue
            write_atomic(target, path.read_bytes())
            stored.append(safe)
        return stored, refused

    def remove(self, name: str) -> Path:
        """Move one source out of the folder (into the data folder, not deleted); where it went."""
        names = [r[0] for r in self.sources()]
        if name not in names:
            raise TutorError(f"«{name}» no está en la carpeta del curso.")
        if len(names) == 1:
            raise TutorError("Es el único archivo del curso: suba otro antes de eliminarlo.")
        removed = self.settings.data_dir / "removed_material"
        removed.mkdir(parents=True, exist_ok=True)
        target = removed / f"{time.strftime('%Y%m%d-%H%M%S')}-{name.replace('/', '__')}"
        shutil.move(str(self.settings.knowledge_dir / name), target)
        return target

    def reindex(self) -> str:
        """Bring the index in line with the folder and answer from it at once; a summary line."""
        from tutor.app.lock import holding
        from tutor.index import Index, ingest

        # The app already holds the data folder's lock (then this is a no-op); a `tutor ingest` running
        # in another process makes this a clear DataDirBusy instead of two writers on one index.
        with self._lock, holding(self.settings.data_dir, "ingest"):
            embedder = self.tutor.retriever.index.embedder
            report = ingest(self.settings, embedder, progress=True)  # tqdm, which gr.Progress tracks
            self.tutor.use_index(Index.open(self.settings, embedder))
        lines = [f"Índice actualizado: {report.files} archivos, {report.chunks} fragmentos ({report.embedded} "
                 f"calculados, {report.removed} eliminados) en {report.seconds:.1f} s."]  # fmt: skip
        lines += [f"Aviso: {p}" for p in report.problems]
        return "\n\n".join(lines)


def preview_template(tutor: Tutor, name: str, text: str, question: str, mode: str = "explain") -> tuple[str, str]:
    """(the edited template filled with sample values, the tutor's reply using it): nothing is saved."""
    template = tutor.prompts.validate(name, text)
    question = (question or "").strip() or SAMPLE_QUESTION
    values = {v: _SAMPLE_VALUES.get(v, f"<{v}>") for v in template.variables}
    if "question" in values:
        values["question"] = question
    rendered = template.render(values)
    trial = tutor.with_prompts(tutor.prompts.with_text(name, text))
    plan = trial.plan(question, [], mode)
    final = None
    for final in trial.answer(plan):
        pass
    return rendered, final.text if final is not None else ""


def shown(text: str) -> str:
    """Text for a Markdown status line: no HTML, and no link or image that would make the page fetch."""
    return html.escape(text, quote=False).replace("[", "\\[").replace("]", "\\]")


def _client(request: Any) -> str:
    """The address that failed logins count against. Behind a reverse proxy on this machine (the
    README's nginx), every request comes from loopback: the proxy's X-Forwarded-For names the real
    client, the last address in it being the one the proxy saw. Only a loopback peer is believed,
    so a client elsewhere cannot pick its own address to dodge the limit."""
    client = getattr(request, "client", None)
    host = str(getattr(client, "host", "") or "desconocido")
    if host in ("127.0.0.1", "::1"):
        headers = getattr(request, "headers", None) or {}
        forwarded = str(headers.get("x-forwarded-for", "")).split(",")[-1].strip()
        return forwarded or host
    return host


def build_instructor_tab(
    tutor: Tutor,
    settings: Settings,
    store: Store | None,
    *,
    guard: LoginGuard | None = None,
    sessions: Sessions | None = None,
) -> None:
    """Add the "Instructor" tab to the gr.Blocks being built (call inside its `with` block)."""
    InstructorTab(tutor, settings, store, guard=guard or LoginGuard(), sessions=sessions or Sessions()).build()


class InstructorTab:
    """The tab's widgets and their handlers. Every panel handler goes through `_guarded`: the session
    is checked on the server first, and errors become a status message."""

    _API: dict[str, Any] = {"api_visibility": "undocumented", "concurrency_id": "instructor", "concurrency_limit": 2}

    def __init__(self, tutor: Tutor, settings: Settings, store: Store | None, *, guard: LoginGuard,
                 sessions: Sessions) -> None:  # fmt: skip
        assert settings.instructor_password is not None, "the tab exists only with TUTOR_INSTRUCTOR_PASSWORD"
        self.tutor, self.settings, self.store = tutor, settings, store
        self.secret = settings.instructor_password.get_secret_value().encode("utf-8")
        self.guard, self.sessions = guard, sessions
        self.material = Material(tutor, settings)
        self.backups = settings.data_dir / "prompt_backups"

    def build(self) -> None:
        with gr.Tab("Instructor", elem_id="instructor-tab"):
            self.token = gr.State("")
            with gr.Column(visible=True) as self.login_box:
                gr.Markdown("### Panel del profesorado")
                self.password = gr.Textbox(label="Contraseña del profesorado", type="password",
                                           elem_id="instructor-password")  # fmt: skip
                self.enter = gr.Button("Entrar", variant="primary", elem_id="instructor-login")
            self.login_status = gr.Markdown("", elem_id="instructor-login-status")
            with gr.Column(visible=False) as self.board:
                self.leave = gr.Button("Cerrar sesión", size="sm", elem_id="instructor-logout")
                with gr.Tab("Plantillas"):
                    self._templates_panel()
                with gr.Tab("Material"):
                    self._material_panel()
                with gr.Tab("Analíticas"):
                    self._analytics_panel()
            self._wire()

    # --- widgets ------------------------------------------------------------------------------------

    def _templates_panel(self) -> None:
        gr.Markdown(
            "Edite los textos de `prompts/`. «Vista previa» prueba el cambio sin guardarlo; "
            "«Guardar» lo valida, guarda una copia de la versión anterior y lo aplica al momento."
        )
        self.template = gr.Dropdown(choices=[], label="Plantilla", allow_custom_value=True,
                                    elem_id="instructor-template")  # fmt: skip
        self.editor = gr.Code(language="markdown", label="Contenido de la plantilla", interactive=True,
                              elem_id="instructor-editor")  # fmt: skip
        self.sample = gr.Textbox(value=SAMPLE_QUESTION, label="Pregunta de ejemplo para la vista previa")
        with gr.Row():
            self.preview = gr.Button("Vista previa", elem_id="instructor-preview")
            self.save = gr.Button("Guardar", variant="primary", elem_id="instructor-save")
        self.template_status = gr.Markdown("", elem_id="instructor-template-status")
        self.rendered = gr.Code(label="Plantilla con la pregunta de ejemplo", interactive=False)
        self.reply = gr.Markdown("", label="Respuesta del tutor con la plantilla editada")

    def _material_panel(self) -> None:
        gr.Markdown(
            f"Suba archivos .md, .txt o .pdf (máximo {self.settings.upload_max_mb:g} MB cada uno) "
            "a la carpeta del curso; el índice se actualiza y las respuestas los usan al momento."
        )
        self.uploads = gr.File(file_count="multiple", file_types=sorted(SUFFIXES), label="Archivos del curso",
                               elem_id="instructor-files")  # fmt: skip
        self.upload = gr.Button("Subir y reindexar", variant="primary", elem_id="instructor-upload")
        self.sources = gr.Dataframe(label="Fuentes del curso", interactive=False, elem_id="instructor-sources")
        with gr.Row():
            self.victim = gr.Dropdown(choices=[], label="Fuente a eliminar", allow_custom_value=True,
                                      elem_id="instructor-victim")  # fmt: skip
            self.remove = gr.Button("Eliminar y reindexar", variant="stop", elem_id="instructor-remove")
        self.material_status = gr.Markdown("", elem_id="instructor-material-status")

    def _analytics_panel(self) -> None:
        with gr.Row():
            self.since = gr.Textbox(label="Desde (AAAA-MM-DD)", placeholder="2025-01-31", elem_id="instructor-since")
            self.until = gr.Textbox(label="Hasta (AAAA-MM-DD)", placeholder="2025-06-30", elem_id="instructor-until")
            self.refresh = gr.Button("Actualizar", elem_id="instructor-refresh")
        self.analytics_status = gr.Markdown("", elem_id="instructor-analytics-status")
        self.chart = gr.BarPlot(x="Sección", y="Preguntas", label="Preguntas por sección del curso",
                                x_label_angle=-45, elem_id="instructor-chart")  # fmt: skip
        self.gate_table = gr.Dataframe(label="Resultados del filtro (en tema, fuera de tema, inseguro por motivo)",
                                       interactive=False)  # fmt: skip
        self.down_table = gr.Dataframe(label="Respuestas con pulgar abajo y sus comentarios", interactive=False)
        with gr.Row():
            self.export = gr.Button("Exportar CSV", elem_id="instructor-export")
            self.exported = gr.File(label="CSV exportado", interactive=False)

    def _wire(self) -> None:
        api, guarded = self._API, self._guarded
        board_outputs = [self.token, self.login_status, self.password, self.login_box, self.board, self.template,
                         self.sources, self.victim]  # fmt: skip
        self.enter.click(self.login, [self.password], board_outputs, api_name="instructor_login", **api)
        self.password.submit(self.login, [self.password], board_outputs, api_visibility="private")
        self.leave.click(guarded(self.logout, self.login_status), [self.token],
                         [self.token, self.login_status, self.login_box, self.board],
                         api_name="instructor_logout", **api)  # fmt: skip
        self.template.change(guarded(self.load_template, self.template_status), [self.token, self.template],
                             [self.editor, self.template_status], api_name="instructor_template", **api)  # fmt: skip
        self.preview.click(guarded(self.preview_edit, self.template_status),
                           [self.token, self.template, self.editor, self.sample],
                           [self.rendered, self.reply, self.template_status],
                           api_name="instructor_preview", **api)  # fmt: skip
        self.save.click(guarded(self.save_edit, self.template_status), [self.token, self.template, self.editor],
                        [self.template_status], api_name="instructor_save", **api)  # fmt: skip
        material_outputs = [self.material_status, self.sources, self.uploads, self.victim]
        self.upload.click(guarded(self.upload_files, self.material_status), [self.token, self.uploads],
                          material_outputs, api_name="instructor_upload", preprocess=False, **api)  # fmt: skip
        self.remove.click(guarded(self.remove_source, self.material_status), [self.token, self.victim],
                          material_outputs, api_name="instructor_remove", **api)  # fmt: skip
        self.refresh.click(guarded(self.show_analytics, self.analytics_status), [self.token, self.since, self.until],
                           [self.analytics_status, self.chart, self.gate_table, self.down_table],
                           api_name="instructor_analytics", **api)  # fmt: skip
        self.export.click(guarded(self.export_csv, self.analytics_status), [self.token, self.since, self.until],
                          [self.exported, self.analytics_status], api_name="instructor_export", **api)  # fmt: skip
        sources_button = gr.Button(visible=False)
        sources_button.click(guarded(self.list_sources, self.material_status), [self.token], material_outputs,
                             api_name="instructor_sources", **api)  # fmt: skip

    def _guarded(self, fn: Callable[..., Any], status: Any) -> Callable[..., Any]:
        """A panel handler that checks the session on the server first and turns errors into `status`."""

        def handler(token: Any, *args: Any, **kwargs: Any) -> Any:
            if not self.sessions.valid(token):
                raise gr.Error("Sesión no válida o caducada: vuelva a entrar con la contraseña.",
                               print_exception=False)  # fmt: skip
            try:
                return fn(token, *args, **kwargs)
            except TutorError as exc:
                gr.Warning(shown(str(exc)))
                return {status: f"**Error:** {shown(str(exc))}"}
            except Exception:
                log.exception("instructor panel: %s failed", fn.__name__)
                return {status: "**Error inesperado:** el detalle quedó en el registro del servidor."}

        handler.__signature__ = inspect.signature(fn)  # type: ignore[attr-defined]  # gr.Progress is found
        handler.__name__ = fn.__name__
        return handler

    # --- handlers -----------------------------------------------------------------------------------

    def login(self, secret_try: str, request: gr.Request) -> Any:
        key = _client(request)
        wait = self.guard.wait(key)
        if wait > 0:
            return {self.login_status: f"Demasiados intentos fallidos: espere {wait:.0f} s antes de volver a probar."}
        if not hmac.compare_digest((secret_try or "").encode("utf-8"), self.secret):
            self.guard.failed(key)
            log.warning("instructor panel: wrong password from %s", key)
            return {self.login_status: "Contraseña incorrecta.", self.password: ""}
        self.guard.succeeded(key)
        rows = self._sources_table()
        return {self.token: self.sessions.new(), self.login_status: "Sesión iniciada.", self.password: "",
                self.login_box: gr.update(visible=False), self.board: gr.update(visible=True),
                self.template: gr.update(choices=self.tutor.prompts.names(), value=None), self.sources: rows,
                self.victim: gr.update(choices=list(rows["Archivo"]), value=None)}  # fmt: skip

    def logout(self, session: str) -> Any:
        self.sessions.end(session)
        return {self.token: "", self.login_status: "Sesión cerrada.", self.login_box: gr.update(visible=True),
                self.board: gr.update(visible=False)}  # fmt: skip

    def load_template(self, session: str, name: str) -> Any:
        prompts = self.tutor.prompts
        if name not in prompts.names():
            raise TutorError("Elija una plantilla de la lista.")
        text = (prompts.root / f"{name}.md").read_text(encoding="utf-8")
        problem = prompts.errors.get(name, "")
        return {self.editor: text,
                self.template_status: f"**Atención:** {problem}" if problem else f"`prompts/{name}.md`"}  # fmt: skip

    def preview_edit(self, session: str, name: str, text: str, question: str) -> Any:
        if name not in self.tutor.prompts.names():
            raise TutorError("Elija una plantilla de la lista.")
        filled, answer = preview_template(self.tutor, name, text or "", question)
        return {self.rendered: filled, self.reply: answer,
                self.template_status: "Vista previa con la versión editada (no se ha guardado)."}  # fmt: skip

    def save_edit(self, session: str, name: str, text: str) -> Any:
        backup = save_template(self.tutor.prompts, name, text or "", self.backups)
        log.info("instructor panel: saved prompts/%s.md (backup %s)", name, backup)
        return {self.template_status: f"Guardado `prompts/{name}.md`; ya está en uso. Copia de la versión "
                                      f"anterior: `{backup}`"}  # fmt: skip

    def upload_files(self, session: str, files: Any, progress: Any = gr.Progress(track_tqdm=True)) -> Any:
        # preprocess=False: `files` are Gradio's FileData dicts, already moved into its upload cache
        # and checked there; orig_name is the name the browser sent, checked here.
        items = files if isinstance(files, list) else [files] if files else []
        pairs = [(str(f.get("orig_name") or Path(f["path"]).name), Path(f["path"])) for f in items]
        if not pairs:
            raise TutorError("Elija primero uno o más archivos .md, .txt o .pdf.")
        stored, refused = self.material.add(pairs)
        lines = [f"Rechazado: {shown(r)}" for r in refused]
        if not stored:
            gr.Warning(shown(" ".join(refused)))
            return {self.material_status: "\n\n".join(lines)}
        progress(0, desc="Indexando")
        lines.insert(0, f"Añadido: {', '.join(stored)}. " + self.material.reindex())
        return self._after_change("\n\n".join(lines))

    def remove_source(self, session: str, name: str, progress: Any = gr.Progress(track_tqdm=True)) -> Any:
        moved = self.material.remove(str(name or ""))
        progress(0, desc="Indexando")
        return self._after_change(f"Eliminado «{name}» (guardado en `{moved}`). " + self.material.reindex())

    def list_sources(self, session: str) -> Any:
        return self._after_change("")

    def show_analytics(self, session: str, start: str, end: str) -> Any:
        if self.store is None:
            raise TutorError("El almacén local no está disponible: no hay estadísticas.")
        figures = self.store.analytics(start, end)
        bars = pd.DataFrame([(f"§{s} {t}"[:60], n) for s, t, n in figures.per_section],
                            columns=["Sección", "Preguntas"])  # fmt: skip
        gates = pd.DataFrame(figures.gate, columns=["Resultado", "Motivo", "Mensajes"])
        downs = pd.DataFrame(
            [(d["created"], d["question"] if d["question"] is not None else "(no guardada)", d["comment"],
              " ".join(d["sections"] or [])) for d in figures.thumbs_down],
            columns=["Fecha", "Pregunta", "Comentario", "Secciones"],
        )  # fmt: skip
        rate = figures.fallback_rate
        share = f"{rate:.0%} de {figures.course_answers}" if rate is not None else "n/d"
        summary = (f"{figures.answers} respuestas en el periodo · pulgar arriba {figures.thumbs_up}, "
                   f"abajo {len(figures.thumbs_down)} · respuestas citadas del curso (el texto del modelo "
                   f"no se verificó o no hubo modelo): {share}")  # fmt: skip
        # Bars start at zero: with Gradio's automatic axis a section asked once had no visible bar.
        top = int(bars["Preguntas"].max()) if len(bars) else 1
        chart_update = gr.update(value=bars, y_lim=[0, top])
        return {self.analytics_status: summary, self.chart: chart_update, self.gate_table: gates,
                self.down_table: downs}  # fmt: skip

    def export_csv(self, session: str, start: str, end: str) -> Any:
        if self.store is None:
            raise TutorError("El almacén local no está disponible: no hay nada que exportar.")
        text = self.store.export_csv(start, end)
        path = Path(tempfile.mkdtemp(prefix="tutor-export-")) / "tutor-analiticas.csv"
        path.write_text(text, encoding="utf-8")
        return {self.exported: str(path), self.analytics_status: f"CSV exportado ({text.count(chr(10)) - 1} filas)."}

    def _sources_table(self) -> Any:
        return pd.DataFrame(self.material.sources(), columns=["Archivo", "Secciones", "Fragmentos", "KB"])

    def _after_change(self, message: str) -> Any:
        rows = self._sources_table()
        return {self.material_status: message, self.sources: rows, self.uploads: None,
                self.victim: gr.update(choices=list(rows["Archivo"]), value=None)}  # fmt: skip
