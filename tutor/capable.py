"""Which models the tutor uses: the settings' choice, else the capable set where the machine runs it.

The rule (README, "Models"): the capable set (qwen2.5-coder-1.5b + embeddinggemma-300m) when both
are installed and the machine qualifies — at least MIN_AVAILABLE_GIB of memory available and a
one-thread matrix-multiply probe of at least MIN_PROBE_GFLOPS — else the small set (the packaged
gemma-3-270m + e5-small). The verdict is measured once per data folder and kept in
<data_dir>/models/machine.json, so a busy moment does not switch models (and rebuild the index) from
one start to the next; `tutor models probe` measures again. It does not install or load models.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tutor.catalogue import find, lookup
from tutor.config import Settings
from tutor.errors import TutorError

CAPABLE = ("qwen2.5-coder-1.5b", "embeddinggemma-300m")
SMALL = ("gemma-3-270m", "e5-small")
MIN_AVAILABLE_GIB = 4.0  # the capable set peaked at 2.6 GiB RSS in the tutor; the rest is for the system
MIN_PROBE_GFLOPS = 60.0  # half this project's machine (116-122), where Qwen 1.5B takes 50-110 s an answer
EMBEDDER_ALIASES = {"e5": "e5-small"}
SWITCH = (
    "Para usar el conjunto capaz: .venv/bin/tutor models install qwen2.5-coder-1.5b y .venv/bin/tutor models "
    "install embeddinggemma-300m; un equipo que cumple la regla los usa solo, otro con "
    "TUTOR_MODEL=qwen2.5-coder-1.5b TUTOR_EMBEDDER=embeddinggemma-300m."
)


@dataclass(frozen=True)
class Machine:
    """The measured verdict: does this machine run the capable set well enough, and why."""

    available_gib: float
    probe_gflops: float
    qualifies: bool
    why: str


@dataclass(frozen=True)
class Selection:
    """What the tutor uses: each a catalogue name or a path, and why (one line, Spanish)."""

    generator: str
    embedder: str
    why: str


def probe_gflops(n: int = 384, repeats: int = 6) -> float:
    """GFLOP/s of a fixed float32 matrix multiply on one thread, best of `repeats` (about 0.2 s).

    One thread because the tutor's model runs on few; the best run because a busy moment says
    nothing about the machine."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    best = float("inf")
    with threadpool_limits(1):
        a @ b  # warm-up
        for _ in range(repeats):
            started = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - started)
    return 2 * n**3 / max(best, 1e-9) / 1e9


def available_gib() -> float:
    """Memory available to a new program (Linux: MemAvailable; elsewhere psutil when installed)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024 / 2**30
    except OSError:
        pass
    try:
        import psutil  # type: ignore[import-not-found,import-untyped,unused-ignore]  # optional, off Linux
    except ImportError:
        return 0.0
    return float(psutil.virtual_memory().available) / 2**30


def judge(available: float, gflops: float) -> Machine:
    """The rule itself, on measured figures."""
    memory_ok, speed_ok = available >= MIN_AVAILABLE_GIB, gflops >= MIN_PROBE_GFLOPS
    figures = f"{available:.1f} GiB de memoria disponibles, prueba de cálculo {gflops:.0f} GFLOP/s"
    if memory_ok and speed_ok:
        why = f"Este equipo puede usar el conjunto capaz ({figures})."
    else:
        lacks = [] if memory_ok else [f"hacen falta {MIN_AVAILABLE_GIB:.0f} GiB disponibles"]
        lacks += [] if speed_ok else [f"la prueba debe llegar a {MIN_PROBE_GFLOPS:.0f} GFLOP/s"]
        why = f"Este equipo se queda con el conjunto pequeño ({figures}; {' y '.join(lacks)})."
    return Machine(round(available, 2), round(gflops, 1), memory_ok and speed_ok, why)


def machine(data_dir: Path, *, measure_again: bool = False) -> Machine:
    """The verdict kept in <data_dir>/models/machine.json, measured when missing (or when asked)."""
    path = data_dir / "models" / "machine.json"
    if not measure_again:
        try:
            return Machine(**json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            pass
    verdict = judge(available_gib(), probe_gflops())
    keep_json(path, asdict(verdict))
    return verdict


def keep_json(path: Path, data: dict[str, Any]) -> None:
    """Write a measured verdict atomically; in a read-only data folder it is simply measured again next time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        partial.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        os.replace(partial, path)
    except OSError:
        pass


def select(settings: Settings) -> Selection:
    """The generator and embedder the settings name, the rule filling in what they leave to it."""
    generator = settings.generator or (str(settings.gguf) if settings.gguf is not None else None)
    embedder = EMBEDDER_ALIASES.get(settings.embedder.strip().lower(), settings.embedder.strip())
    if embedder.lower() == "auto":
        embedder = ""
    if generator and embedder:
        return Selection(generator, embedder, "Modelos elegidos en la configuración (TUTOR_MODEL, TUTOR_EMBEDDER).")
    capable_installed = all(find(name).installed(settings.data_dir) for name in CAPABLE)
    if capable_installed:
        verdict = machine(settings.data_dir)
        auto, why = (CAPABLE, verdict.why) if verdict.qualifies else (SMALL, f"{verdict.why} {SWITCH}")
    else:
        auto, why = SMALL, f"El conjunto capaz no está instalado. {SWITCH}"
    if generator or embedder:
        why = f"{why} Configurado: {'TUTOR_MODEL' if generator else 'TUTOR_EMBEDDER'}."
    return Selection(generator or auto[0], embedder or auto[1], why)


def generator_file(settings: Settings, name_or_path: str) -> tuple[Path, bool]:
    """(GGUF path, packaged) for a catalogue name or a path; a catalogue model not installed is refused."""
    entry = lookup(name_or_path)
    if entry is None:
        return Path(name_or_path).expanduser(), False
    if entry.kind != "generator":
        raise TutorError(f"«{entry.name}» es un modelo de embeddings, no un generador: revise TUTOR_MODEL.")
    if entry.source == "package":
        from tutor.models import packaged_gguf

        return packaged_gguf(settings.data_dir), True
    if not entry.installed(settings.data_dir):
        raise TutorError(not_installed(entry.name, "TUTOR_MODEL"))
    return entry.target(settings.data_dir), False


def not_installed(name: str, variable: str) -> str:
    return (
        f"El modelo «{name}» no está instalado. Instálelo con: .venv/bin/tutor models install {name} "
        f"(o copie el archivo desde otro equipo y ponga su ruta en {variable})."
    )


def footer_text(settings: Settings) -> str:
    """One line for the web page's footer: the models in use and which set they are."""
    chosen = select(settings)
    pair = (chosen.generator, chosen.embedder)
    which = (
        "conjunto capaz" if pair == CAPABLE else "conjunto pequeño" if pair == SMALL else "elegidos en la configuración"
    )
    names = " + ".join(Path(name).name for name in pair)
    return f"Modelos: {names} ({which}; «tutor models list» explica por qué)"
