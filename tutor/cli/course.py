"""`tutor ingest | retrieve | gate [train]`: the index and the gate, on the command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tutor.cli.common import indent, open_index, open_retriever, read_history
from tutor.errors import TutorError

if TYPE_CHECKING:
    from tutor.config import Settings


def add_parsers(sub: Any) -> None:
    """ingest, retrieve, gate: added to the CLI's subparsers."""
    p = sub.add_parser("ingest", help="indexa el material del curso (incremental)")
    p.add_argument("--rebuild", action="store_true", help="borra el índice y lo construye desde cero")
    p.add_argument("--quiet", action="store_true", help="sin barra de progreso")
    p.set_defaults(run=cmd_ingest)

    p = sub.add_parser("retrieve", help="muestra los pasajes del curso para una pregunta")
    p.add_argument("question")
    p.add_argument("--k", type=int, default=None, help="número de pasajes (por defecto 5)")
    p.add_argument("--json", action="store_true", help="salida JSON")
    p.set_defaults(run=cmd_retrieve)

    p = sub.add_parser("gate", help="¿del curso, ajeno o inseguro? 'tutor gate train' reentrena el filtro")
    p.add_argument("message", nargs="+", help="el mensaje del estudiante, o la palabra 'train' sola")
    p.add_argument("--history", type=Path, help="archivo JSON con los turnos anteriores [{role, content}]")
    p.add_argument("--json", action="store_true", help="un objeto JSON en stdout")
    p.add_argument("--examples", type=Path, help="train: ejemplos JSONL (por defecto, los del paquete)")
    p.add_argument("--out", type=Path, help="train: carpeta del modelo (TUTOR_GATE_MODEL_DIR o el paquete)")
    p.set_defaults(run=cmd_gate)


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from tutor.app.lock import holding
    from tutor.embed import load_embedder
    from tutor.index import ingest

    with holding(settings.data_dir, "ingest"):  # refused while an app serves from this folder
        report = ingest(settings, load_embedder(settings), rebuild=args.rebuild, progress=not args.quiet)
    if report.rebuilt:
        print(f"Índice reconstruido desde cero: {report.rebuilt}.")
    print(
        f"{report.files} archivos, {report.chunks} fragmentos: {report.embedded} calculados, "
        f"{report.reused} reutilizados, {report.unchanged} sin cambios, {report.removed} eliminados "
        f"({report.seconds:.1f} s). Índice en {settings.index_dir}"
    )
    for problem in report.problems:
        print(f"Aviso: {problem}", file=sys.stderr)
    return 0


def cmd_retrieve(args: argparse.Namespace, settings: Settings) -> int:
    retriever = open_retriever(settings)
    passages = retriever.search(args.question, args.k)
    if args.json:
        rows = [
            {
                "section_id": p.chunk.section_id,
                "title": p.chunk.section_title,
                "source": p.chunk.source,
                "chunk_id": p.chunk.id,
                "score": round(p.score, 6),
                "bm25_rank": p.bm25_rank,
                "dense_rank": p.dense_rank,
                "text": p.chunk.text,
            }
            for p in passages
        ]
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    for rank, p in enumerate(passages, start=1):
        print(f"{rank}. {p.citation()}  [{p.chunk.source}]")
        print(indent(p.chunk.text), end="\n\n")
    return 0


def cmd_gate(args: argparse.Namespace, settings: Settings) -> int:
    from dataclasses import asdict

    from tutor.gate import Gate, model_folder, train_gate
    from tutor.language import LanguageDetector

    index = open_index(settings, repair=True)
    if args.message == ["train"]:
        from tutor.gate.model import EXAMPLES, load_examples

        examples = load_examples(args.examples or EXAMPLES)
        print(f"Entrenando el filtro con {len(examples)} ejemplos (validación cruzada)…", file=sys.stderr)
        model, report = train_gate(examples, index)
        folder = args.out or model_folder(settings, index.embedder)
        model.save(folder)
        print(f"{report}\nModelo guardado en {folder}")
        return 0
    message = " ".join(args.message)
    history = read_history(args.history) if args.history else []
    language = LanguageDetector().detect(message, history)
    decision = Gate.load(index, settings).check(message, language, history)
    reply = None
    if not decision.allowed:
        from tutor.prompts import PromptLibrary

        prompts = PromptLibrary(settings.prompts_dir)
        sections = ", ".join(f"§{s}" for s in decision.nearest)
        try:
            reply = prompts.reply(decision.reason, language, sections=sections)
        except TutorError:
            reply = prompts.reply(decision.label, language, sections=sections)
    if args.json:
        print(json.dumps({**asdict(decision), "language": language, "reply": reply}, ensure_ascii=False))
        return 0
    where = f" · regla «{decision.rule}»" if decision.rule else ""
    cut = " · solo se clasificó el principio del mensaje" if decision.truncated else ""
    similar = f" · similitud con el curso {decision.similarity:.3f}" if decision.nearest else ""
    print(f"{decision.label} ({decision.reason}) {decision.score:.2f} · idioma {language} · "
          f"fuente {decision.source}{where}{similar}{cut}")  # fmt: skip
    if reply:
        print(f"\n{reply}")
    return 0
