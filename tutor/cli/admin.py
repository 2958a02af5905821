"""`tutor model info | check` and `tutor data export | purge`: the generator, and what the app stored."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tutor.errors import TutorError

if TYPE_CHECKING:
    from tutor.config import Settings


def add_parsers(sub: Any) -> None:
    """model, data: added to the CLI's subparsers."""
    p = sub.add_parser("model", help="el modelo generador: info | check")
    actions = p.add_subparsers(dest="model_command", metavar="ACCIÓN", required=True)
    m = actions.add_parser("info", help="archivo, tamaño, arquitectura, contexto, estilo de prompt, hilos")
    m.add_argument("--json", action="store_true", help="salida JSON")
    m.set_defaults(run=cmd_model_info)
    m = actions.add_parser("check", help="carga el modelo, genera unas palabras y mide tokens/s")
    m.add_argument("--max-tokens", type=int, default=32)
    m.set_defaults(run=cmd_model_check)

    p = sub.add_parser("data", help="lo que guarda el tutor (valoraciones, estadísticas): export | purge")
    actions = p.add_subparsers(dest="data_command", metavar="ACCIÓN", required=True)
    d = actions.add_parser("export", help="exporta todo lo guardado (JSON; CSV si el archivo acaba en .csv)")
    d.add_argument("--out", type=Path, help="archivo de salida (por defecto, JSON en la salida estándar)")
    d.set_defaults(run=cmd_data_export)
    d = actions.add_parser("purge", help="borra todo lo guardado (valoraciones, preguntas, estadísticas)")
    d.add_argument("--yes", action="store_true", help="no pide confirmación")
    d.set_defaults(run=cmd_data_purge)


def cmd_model_info(args: argparse.Namespace, settings: Settings) -> int:
    from dataclasses import asdict

    from tutor.models import describe, info_rows

    info = describe(settings)  # the file header, and a short-lived engine for the CPU: no model is loaded
    if args.json:
        print(json.dumps(asdict(info), ensure_ascii=False))
        return 0
    for label, value in info_rows(info):
        print(f"{label + ':':<18} {value}")
    return 0


def cmd_model_check(args: argparse.Namespace, settings: Settings) -> int:
    import time

    from tutor.models import check_prompt, load_chat_model

    start = time.perf_counter()
    model = load_chat_model(settings)
    loaded = time.perf_counter()
    info = model.info()
    print(f"Modelo cargado en {loaded - start:.2f} s ({info.name}, estilo {model.style}).")
    if info.repack is not None:
        print(f"Generación {info.engine}; reempaquetado de pesos: {'sí' if info.repack else 'no'} "
              f"({info.repack_reason}).")  # fmt: skip
    first = end = loaded
    pieces: list[str] = []
    for delta in model.stream(check_prompt(model.style), max_tokens=args.max_tokens):
        end = time.perf_counter()
        first = end if not pieces else first
        pieces.append(delta)
        print(delta, end="", flush=True)
    if not pieces:
        print("El modelo no generó ningún texto: pruebe con otro modelo (TUTOR_GGUF).", file=sys.stderr)
        return 1
    rate = f"{(len(pieces) - 1) / (end - first):.1f} tokens/s" if len(pieces) > 1 and end > first else "n/d"
    print(f"\n\nPrimer token en {first - loaded:.2f} s; {len(pieces)} tokens, generación a {rate}.")
    return 0


def cmd_data_export(args: argparse.Namespace, settings: Settings) -> int:
    from tutor.app.store import Store

    store = Store.open(settings)
    if args.out is not None and args.out.suffix.lower() == ".csv":
        text = store.export_csv()
    else:
        text = json.dumps(store.export(), ensure_ascii=False, indent=1) + "\n"
    if args.out is None:
        sys.stdout.write(text)
        return 0
    try:
        args.out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise TutorError(f"No se puede escribir «{args.out}» ({exc.strerror}).") from exc
    print(f"Exportado a {args.out} (desde {store.path}).")
    return 0


def cmd_data_purge(args: argparse.Namespace, settings: Settings) -> int:
    from tutor.app.store import Store

    store = Store.open(settings)
    if not args.yes:
        if not sys.stdin.isatty():
            print(f"Esto borra todo lo guardado en {store.path}. Repita con --yes para confirmarlo.", file=sys.stderr)
            return 1
        if input(f"¿Borrar todo lo guardado en {store.path}? [s/N] ").strip().lower() not in ("s", "si", "sí", "y"):
            print("No se borró nada.")
            return 1
    counts = store.purge()
    print(f"Borrado: {counts['answers']} respuestas y {counts['feedback']} valoraciones ({store.path}).")
    return 0
