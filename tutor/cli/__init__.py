"""Command line: tutor ingest | retrieve | eval | gate [train] | ask | chat | quiz [build|eval] | serve |
model info|check | models list|install|remove|setup|probe | data export|purge.

Each command reads Settings, builds what it needs, and turns a TutorError into one clear line on
stderr (exit code 2). Unexpected errors are logged with their traceback in the data folder and
reported in one line; TUTOR_DEBUG=1 shows the traceback instead. One module per group of commands
(course, evaluation, conversation, practice, admin, models), each adding its own parsers; this one
only assembles them. It holds no retrieval or ranking logic of its own.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tutor.cli import admin, conversation, course, evaluation, models, practice
from tutor.errors import TutorError  # importing tutor sets the offline switches first

if TYPE_CHECKING:  # the commands import what they need when they run: `tutor --help` stays quick
    from tutor.config import Settings

log = logging.getLogger("tutor")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    try:
        settings = _settings(args)
        return int(args.run(args, settings) or 0)
    except TutorError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `tutor … --json | head`: the reader left; nothing to report
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("\nInterrumpido.", file=sys.stderr)
        return 130
    except Exception:
        if os.environ.get("TUTOR_DEBUG"):
            raise
        where = _log_exception()
        print(f"Error inesperado: el detalle quedó en {where}. Por favor, repórtelo.", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tutor", description="Tutor offline del curso de LLMs.")
    parser.add_argument("--data-dir", type=Path, help="carpeta de datos derivados (TUTOR_DATA_DIR)")
    parser.add_argument("--knowledge-dir", type=Path, help="carpeta del material del curso (TUTOR_KNOWLEDGE_DIR)")
    parser.add_argument("--embedder", help="e5-small, embeddinggemma-300m o una carpeta (TUTOR_EMBEDDER)")
    parser.add_argument("--gguf", type=Path, help="archivo GGUF del modelo generador (TUTOR_GGUF)")
    sub = parser.add_subparsers(dest="command", metavar="COMANDO")
    for group in (course, evaluation, conversation, practice, admin, models):  # the order of `tutor --help`
        group.add_parsers(sub)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    from tutor.config import Settings

    overrides = {
        key: value
        for key, value in {
            "data_dir": args.data_dir,
            "knowledge_dir": args.knowledge_dir,
            "embedder": args.embedder,
            "gguf": args.gguf,
            "host": getattr(args, "host", None),
            "port": getattr(args, "port", None),
        }.items()
        if value is not None
    }
    return Settings.load(**overrides)


def _log_exception() -> Path:
    from tutor.config import Settings

    try:
        folder = Settings().data_dir / "logs"
    except Exception:
        folder = Path.cwd()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tutor.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    log.addHandler(handler)
    log.exception("unexpected error")
    handler.close()
    return path
