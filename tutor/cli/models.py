"""`tutor models list | install | remove | setup | probe`: the model catalogue on the command line.

`setup` is what `make run` calls before the app starts: it measures the machine once and, when it
qualifies, installs the capable set (with progress bars); offline or on a machine that does not
qualify it says so and how to switch, and the app starts on the small set. The app itself never
downloads. It holds no install or selection logic (installer.py, capable.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tutor.capable import CAPABLE, SWITCH, machine, select
from tutor.catalogue import catalogue, find
from tutor.config import Settings
from tutor.errors import TutorError


def add_parsers(sub: Any) -> None:
    """The `models` command and its actions, added to the CLI's subparsers."""
    p = sub.add_parser("models", help="catálogo de modelos: list | install | remove | setup | probe")
    actions = p.add_subparsers(dest="models_command", metavar="ACCIÓN", required=True)
    m = actions.add_parser("list", help="modelos del catálogo: tamaño, licencia, instalado, en uso y por qué")
    m.add_argument("--json", action="store_true", help="salida JSON")
    m.set_defaults(run=cmd_models_list)
    m = actions.add_parser("install", help="descarga con pip las partes de un modelo, las une y las comprueba")
    m.add_argument("name", help="nombre del catálogo (tutor models list)")
    m.add_argument("--quiet", action="store_true", help="sin barra de progreso")
    m.set_defaults(run=cmd_models_install)
    m = actions.add_parser("remove", help="borra un modelo instalado de la carpeta de datos")
    m.add_argument("name")
    m.set_defaults(run=cmd_models_remove)
    m = actions.add_parser("setup", help="instala el conjunto capaz si este equipo cumple la regla (make run)")
    m.set_defaults(run=cmd_models_setup)
    m = actions.add_parser("probe", help="vuelve a medir si este equipo puede usar el conjunto capaz")
    m.set_defaults(run=cmd_models_probe)


def models_report(settings: Settings) -> dict[str, Any]:
    """What `tutor models list --json` prints."""
    chosen = select(settings)
    verdict = machine(settings.data_dir)
    why = chosen.why if verdict.why in chosen.why else f"{chosen.why} {verdict.why}"
    rows = [
        {
            "name": entry.name,
            "kind": entry.kind,
            "size_bytes": entry.size_bytes,
            "license": entry.license,
            "installed": entry.installed(settings.data_dir),
            "in_use": entry.name in (chosen.generator, chosen.embedder),
            "path": str(entry.target(settings.data_dir)),
        }
        for entry in catalogue().values()
    ]
    return {"models": rows, "generator": chosen.generator, "embedder": chosen.embedder, "why": why}


def cmd_models_list(args: argparse.Namespace, settings: Settings) -> int:
    report = models_report(settings)
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
        return 0
    for row in report["models"]:
        entry = find(row["name"])
        state = "en uso" if row["in_use"] else ("instalado" if row["installed"] else "no instalado")
        kind = "generador" if row["kind"] == "generator" else "embeddings"
        print(f"{row['name']:<22} {kind:<10} {row['size_bytes'] / 2**20:>7,.0f} MiB  {state:<12} "
              f"{entry.license} ({entry.license_url})")  # fmt: skip
        if row["installed"]:
            print(f"{'':<22} {row['path']}")
    print(f"\nGenerador: {report['generator']} · embeddings: {report['embedder']}\n{report['why']}")
    return 0


def cmd_models_install(args: argparse.Namespace, settings: Settings) -> int:
    from tutor.installer import install

    entry = find(args.name)
    if entry.installed(settings.data_dir):
        print(f"«{entry.name}» ya está instalado: {entry.target(settings.data_dir)}")
        return 0
    print(f"Instalando «{entry.name}» ({entry.size_bytes / 1e9:.2f} GB, licencia {entry.license}: "
          f"{entry.license_url})…", file=sys.stderr)  # fmt: skip
    path = install(entry, settings.data_dir, progress=not args.quiet)
    print(f"Instalado y comprobado (SHA-256): {path}")
    return 0


def cmd_models_remove(args: argparse.Namespace, settings: Settings) -> int:
    from tutor.installer import remove

    entry = find(args.name)
    if remove(entry, settings.data_dir):
        print(f"Borrado «{entry.name}» de {entry.target(settings.data_dir).parent}.")
    else:
        print(f"«{entry.name}» no estaba instalado.")
    return 0


def cmd_models_setup(args: argparse.Namespace, settings: Settings) -> int:
    """Install the capable set where the machine qualifies; never fails the start of the app."""
    from tutor.installer import install

    if settings.generator or settings.gguf or settings.llm_server_url or settings.embedder.lower() != "auto":
        return 0  # the user chose their models: nothing to install on their behalf
    verdict = machine(settings.data_dir)
    missing = [find(name) for name in CAPABLE if not find(name).installed(settings.data_dir)]
    if not verdict.qualifies:
        print(f"{verdict.why} {SWITCH}", file=sys.stderr)
        return 0
    if not missing:
        print(select(settings).why, file=sys.stderr)
        return 0
    print(
        f"{verdict.why} Se instala una vez (unos {sum(m.size_bytes for m in missing) / 1e9:.1f} GB).", file=sys.stderr
    )
    for entry in missing:
        try:
            install(entry, settings.data_dir)
        except TutorError as exc:
            print(f"Aviso: {exc}\nEl tutor sigue con el conjunto pequeño.", file=sys.stderr)
            return 0
    print(f"Conjunto capaz instalado. {select(settings).why}", file=sys.stderr)
    return 0


def cmd_models_probe(args: argparse.Namespace, settings: Settings) -> int:
    verdict = machine(settings.data_dir, measure_again=True)
    print(verdict.why)
    return 0
