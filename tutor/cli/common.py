"""What the commands share: the index opened (and built the first time), the tutor, a history file."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tutor.errors import IndexNotReady, TutorError

if TYPE_CHECKING:
    from tutor.config import Settings
    from tutor.index import Index
    from tutor.pipeline import Tutor
    from tutor.retrieve import Retriever


def open_retriever(settings: Settings, *, repair: bool = False) -> Retriever:
    from tutor.retrieve import Retriever

    return Retriever(open_index(settings, repair=repair), settings)


def open_index(settings: Settings, *, repair: bool = False) -> Index:
    """Open the index; build it the first time. With repair, a damaged index is rebuilt too."""
    from tutor.app.lock import holding
    from tutor.embed import load_embedder
    from tutor.index import Index, ingest

    embedder = load_embedder(settings)
    first_time = not (settings.index_dir / "manifest.json").exists()
    try:
        if first_time:
            print("Primera ejecución: construyendo el índice del curso…", file=sys.stderr)
            with holding(settings.data_dir, "ingest"):
                ingest(settings, embedder)
        return Index.open(settings, embedder)
    except IndexNotReady as exc:
        if not repair:
            raise
        print(f"Aviso: {exc}\nReconstruyendo el índice…", file=sys.stderr)
        with holding(settings.data_dir, "ingest"):  # never under a running app's feet
            ingest(settings, embedder, rebuild=True)
        return Index.open(settings, embedder)


def open_tutor(settings: Settings, model: str) -> tuple[Tutor, list[str]]:
    from tutor.pipeline import build_tutor

    index = open_index(settings, repair=True)
    tutor, notices = build_tutor(settings, model=model, index=index)
    for notice in notices:
        print(f"Aviso: {notice}", file=sys.stderr)
    return tutor, notices


def read_history(path: Path) -> list[Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise TutorError(f"No existe el archivo de historial «{path}».") from exc
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise TutorError(f"El historial «{path}» no es JSON válido: {exc}") from exc
    if not isinstance(data, list):
        raise TutorError(f"El historial «{path}» debe ser una lista de turnos {{role, content}}.")
    return data


def indent(text: str) -> str:
    return "\n".join("   " + line for line in text.splitlines())
