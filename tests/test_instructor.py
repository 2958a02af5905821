"""The instructor panel through the real Gradio server and gradio_client (and raw HTTP for crafted requests).

One small course, its real e5 index, the tutor without a generator; a copy of prompts/ so saving
touches nothing in the repository. Login, rate limit, the server-side session check, templates
(preview, refused and live saves), uploads (refused names and types, a new section retrievable),
removal and analytics.
"""

from __future__ import annotations

import json
import shutil
import socket
import uuid
from pathlib import Path

import httpx
import pytest
from conftest import REPO, SMALL_COURSE

from tutor.app.instructor import LoginGuard, UploadRefused, build_instructor_tab, safe_upload_name
from tutor.app.store import Store
from tutor.config import Settings
from tutor.prompts import PromptLibrary

PASSWORD = "clave-de-prueba-42"


class Clock:
    """The login guard's clock, moved by the tests: a lockout ends without waiting for it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


NEW_SECTION = """# 9. Compresión de modelos

## 9.1. Destilación de conocimiento

La destilación entrena un modelo alumno pequeño para imitar las probabilidades de un modelo maestro
grande. El alumno aprende de las etiquetas suaves del maestro y conserva casi toda su calidad.
"""


@pytest.fixture(scope="module")
def panel(tmp_path_factory: pytest.TempPathFactory, e5):
    import gradio as gr

    from tutor.index import Index, ingest
    from tutor.pipeline import build_tutor

    root = tmp_path_factory.mktemp("panel")
    clock = Clock()
    knowledge = root / "knowledge"
    knowledge.mkdir()
    for name, text in SMALL_COURSE.items():
        (knowledge / name).write_text(text, encoding="utf-8")
    shutil.copytree(REPO / "prompts", root / "prompts")
    settings = Settings(data_dir=root / "data", knowledge_dir=knowledge, instructor_password=PASSWORD,
                        upload_max_mb=0.05)  # fmt: skip
    ingest(settings, e5, progress=False)
    tutor, _ = build_tutor(settings, model="none", index=Index.open(settings, e5))
    tutor = tutor.with_prompts(PromptLibrary(root / "prompts"))  # edits go to the copy, never to the repo
    store = Store.open(settings)
    with gr.Blocks(analytics_enabled=False) as app:
        build_instructor_tab(tutor, settings, store, guard=LoginGuard(max_failures=3, window=60, lockout=300,
                                                                      clock=clock))  # fmt: skip
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app.queue()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield {"url": f"http://127.0.0.1:{port}/", "tutor": tutor, "settings": settings, "store": store, "root": root,
           "clock": clock}  # fmt: skip
    app.close()


def client(panel, *, logged_in: bool = True, headers: dict | None = None):
    from gradio_client import Client

    c = Client(panel["url"], verbose=False, headers=headers)
    if logged_in:
        status = c.predict(PASSWORD, api_name="/instructor_login")[0]
        assert status == "Sesión iniciada."
    return c


def raw_call(url: str, api_name: str, data: list, session: str) -> dict:
    """One event through Gradio's queue by plain HTTP: what a crafted request (not a browser) can send."""
    config = httpx.get(url + "config").json()
    dep = next(d for d in config["dependencies"] if d.get("api_name") == api_name)
    base = url + config.get("api_prefix", "/gradio_api").strip("/") + "/"
    joined = httpx.post(base + "queue/join", json={"data": data, "fn_index": dep["id"], "session_hash": session,
                                                   "event_data": None, "trigger_id": None})  # fmt: skip
    joined.raise_for_status()
    event_id = joined.json()["event_id"]
    with httpx.stream("GET", base + "queue/data", params={"session_hash": session}, timeout=60) as response:
        for line in response.iter_lines():
            if line.startswith("data:"):
                message = json.loads(line[5:])
                if message.get("event_id") == event_id and message.get("msg") == "process_completed":
                    return message["output"]
    raise AssertionError("no reply from the queue")


def test_login_wrong_then_right(panel) -> None:
    c = client(panel, logged_in=False)
    assert c.predict("no-es-la-clave", api_name="/instructor_login")[0] == "Contraseña incorrecta."
    assert c.predict(PASSWORD, api_name="/instructor_login")[0] == "Sesión iniciada."
    assert "chat/answer" in str(c.predict(PASSWORD, api_name="/instructor_login"))  # the templates are listed
    assert c.predict(api_name="/instructor_logout") == "Sesión cerrada."
    with pytest.raises(Exception, match="Sesión no válida"):
        c.predict("chat/answer", api_name="/instructor_template")


def test_wrong_passwords_are_rate_limited(panel) -> None:
    c = client(panel)  # a success clears earlier failures from this address
    for _ in range(3):
        assert c.predict("mal", api_name="/instructor_login")[0] == "Contraseña incorrecta."
    locked = c.predict(PASSWORD, api_name="/instructor_login")[0]  # even the right one
    assert locked == "Demasiados intentos fallidos: espere 300 s antes de volver a probar."
    panel["clock"].advance(299)
    assert "espere 1 s" in c.predict(PASSWORD, api_name="/instructor_login")[0]
    panel["clock"].advance(1)
    assert c.predict(PASSWORD, api_name="/instructor_login")[0] == "Sesión iniciada."


def test_behind_a_proxy_the_limit_counts_each_forwarded_address(panel) -> None:
    """Behind nginx every request arrives from 127.0.0.1: one student's wrong passwords must not lock
    the instructor out, so failures count against the address the proxy forwards."""
    student = client(panel, logged_in=False, headers={"X-Forwarded-For": "10.0.0.7"})
    for _ in range(3):
        assert student.predict("mal", api_name="/instructor_login")[0] == "Contraseña incorrecta."
    assert student.predict(PASSWORD, api_name="/instructor_login")[0].startswith("Demasiados intentos")
    teacher = client(panel, logged_in=False, headers={"X-Forwarded-For": "10.0.0.8"})
    assert teacher.predict(PASSWORD, api_name="/instructor_login")[0] == "Sesión iniciada."
    panel["clock"].advance(300)  # the lockout ends and leaves the other tests alone


def test_handlers_refuse_a_session_that_did_not_log_in(panel) -> None:
    from gradio_client.exceptions import AppError

    path = panel["root"] / "prompts" / "replies" / "es" / "chitchat.md"
    before = path.read_text(encoding="utf-8")
    c = client(panel, logged_in=False)
    for api_name, args in [("/instructor_template", ("chat/answer",)),
                           ("/instructor_save", ("replies/es/chitchat", "---\nvariables: []\n---\nHackeado\n")),
                           ("/instructor_analytics", ("", "")), ("/instructor_export", ("", "")),
                           ("/instructor_sources", ()), ("/instructor_remove", ("bert.md",))]:  # fmt: skip
        with pytest.raises(AppError, match="Sesión no válida"):
            c.predict(*args, api_name=api_name)
    # A crafted request cannot bring its own token: the session's value lives on the server.
    output = raw_call(panel["url"], "instructor_save", ["un-token-inventado", "replies/es/chitchat", "x"],
                      uuid.uuid4().hex)  # fmt: skip
    assert "Sesión no válida" in json.dumps(output, ensure_ascii=False)
    assert path.read_text(encoding="utf-8") == before
    assert (panel["settings"].knowledge_dir / "bert.md").is_file()


def test_preview_uses_the_edit_without_saving(panel) -> None:
    c = client(panel)
    name = "replies/es/extractive_intro"
    original = c.predict(name, api_name="/instructor_template")[0]
    assert original.startswith("---\nvariables:")
    edited = original.replace("Esto es lo que dice el curso", "VISTA PREVIA: según el curso")
    filled, answer, status = c.predict(name, edited, "¿Qué es RAG?", api_name="/instructor_preview")
    assert "VISTA PREVIA" in filled and "VISTA PREVIA" in answer and "§4.3.1" in answer
    assert "no se ha guardado" in status
    assert "VISTA PREVIA" not in panel["tutor"].prompts.render(name)  # nothing saved


def test_a_broken_template_is_refused_with_its_line_and_a_good_one_is_live(panel) -> None:
    c = client(panel)
    tutor, name = panel["tutor"], "chat/answer"
    path = tutor.prompts.root / f"{name}.md"
    original = path.read_text(encoding="utf-8")
    broken = original.rstrip("\n") + "\nUsa $contexto.\n"
    line = broken.count("\n")
    status = c.predict(name, broken, api_name="/instructor_save")
    assert f"prompts/chat/answer.md: line {line}: unknown variable 'contexto'" in status
    assert path.read_text(encoding="utf-8") == original

    fixed = original.replace("<material>", "MATERIAL REVISADO del curso:\n<material>")
    assert "MATERIAL REVISADO" in fixed
    status = c.predict(name, fixed, api_name="/instructor_save")
    assert status.startswith("Guardado `prompts/chat/answer.md`")
    assert path.read_text(encoding="utf-8") == fixed
    assert "MATERIAL REVISADO" in tutor.prompts.render(name, context="c", question="q", language_name="español")
    backups = list((panel["settings"].data_dir / "prompt_backups").glob("chat__answer.*.md"))
    assert [b.read_text(encoding="utf-8") for b in backups] == [original]
    assert not list(path.parent.glob(".*.tmp"))  # no temporary file left behind


@pytest.mark.parametrize(
    "name",
    [
        "../../x.md",
        "/etc/x.md",
        "sub/x.md",
        "..\\x.md",
        ".oculto.md",
        "x.exe",
        "x.md\x00.txt",
        "",
        "..md",
        "<b>x</b>.md",
        "a[b](c).md",
    ],
)
def test_unsafe_names_are_refused(name: str) -> None:
    with pytest.raises(UploadRefused):
        safe_upload_name(name)


def test_path_traversal_in_an_upload_is_refused(panel) -> None:
    url, session = panel["url"], uuid.uuid4().hex
    assert "Sesión iniciada." in raw_call(url, "instructor_login", [PASSWORD], session)["data"]
    uploaded = httpx.post(url + "gradio_api/upload", files={"files": ("x.md", b"# Hola\n\nTexto.\n")}).json()[0]

    def send(name: str) -> str:  # a crafted request: the browser would never send such a name
        crafted = {"path": uploaded, "orig_name": name, "meta": {"_type": "gradio.FileData"}}
        return raw_call(url, "instructor_upload", [None, [crafted]], session)["data"][0]

    assert "Nombre de archivo no permitido «../../x.md»" in send("../../x.md")
    root = panel["settings"].knowledge_dir
    assert not (root / "x.md").exists() and not (root.parent.parent / "x.md").exists()
    status = send("<img src=x onerror=alert(1)>.md")  # refused, and its name shown inert
    assert "&lt;img src=x onerror=alert(1)&gt;" in status and "<img" not in status
    assert "!\\[a\\](http://evil.example/a.png)" in send("![a](http://evil.example/a.png).md")


def test_uploads_are_checked_then_indexed_and_removed(panel, tmp_path: Path) -> None:
    from gradio_client import handle_file

    c = client(panel)
    tutor, knowledge = panel["tutor"], panel["settings"].knowledge_dir
    bad = {"falso.pdf": "no soy un pdf", ".oculto.md": "# x", "notas.exe": "MZ", "grande.md": "palabra " * 10_000}
    for name, text in bad.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        status = c.predict([handle_file(tmp_path / name)], api_name="/instructor_upload")[0]
        assert status.startswith("Rechazado:"), (name, status)
        assert not (knowledge / name).exists()

    good = tmp_path / "compresion.md"
    good.write_text(NEW_SECTION, encoding="utf-8")
    status, sources, _, _ = c.predict([handle_file(good)], api_name="/instructor_upload")
    assert status.startswith("Añadido: compresion.md. Índice actualizado"), status
    assert ["compresion.md", 1, 1] == [row[:3] for row in sources["data"] if row[0] == "compresion.md"][0]
    top = tutor.retriever.search("¿Qué es la destilación de un modelo maestro en un alumno?", 1)[0]
    assert top.section_id == "9.1"  # answers use the new material at once

    status, sources, _, _ = c.predict("compresion.md", api_name="/instructor_remove")
    assert status.startswith("Eliminado «compresion.md»"), status
    assert "compresion.md" not in [row[0] for row in sources["data"]]
    assert not (knowledge / "compresion.md").exists()
    assert list((panel["settings"].data_dir / "removed_material").glob("*compresion.md"))
    assert all(p.chunk.source != "compresion.md" for p in tutor.retriever.search("destilación maestro alumno", 5))


def test_analytics_and_csv_export(panel) -> None:
    store, tutor = panel["store"], panel["tutor"]
    for question in ("¿Qué cambió RoBERTa respecto a BERT?", "¿Qué es RAG?", "cuéntame un chiste de fútbol"):
        plan = tutor.plan(question)
        *_, final = tutor.answer(plan)
        store.record_answer(final.answer)
        if "RAG" in question:
            store.record_feedback(plan.id, "down", "Falta un ejemplo")
    c = client(panel)
    summary, chart, gates, downs = c.predict("", "", api_name="/instructor_analytics")
    assert summary.startswith("3 respuestas en el periodo")
    chart = chart.get("value", chart)  # an update: the bars, with the axis from zero
    assert chart["data"] == [["§3.3.3 RoBERTa y sus Mejoras Respecto a BERT", 1], ["§4.3.1 ¿Qué es RAG?", 1]]
    assert sum(row[2] for row in gates["data"]) == 3
    assert downs["data"][0][1:3] == ["¿Qué es RAG?", "Falta un ejemplo"]
    assert c.predict("2000-01-01", "2000-01-02", api_name="/instructor_analytics")[0].startswith("0 respuestas")
    assert "AAAA-MM-DD" in c.predict("ayer", "", api_name="/instructor_analytics")[0]

    path, status = c.predict("", "", api_name="/instructor_export")
    text = Path(path).read_text(encoding="utf-8")
    assert text.startswith("answer_id,created") and "Falta un ejemplo" in text
    assert "3 filas" in status
