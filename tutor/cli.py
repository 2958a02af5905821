"""Command line: tutor ingest | retrieve | eval | chat | serve.

Each command reads Settings, builds what it needs, and turns a TutorError into one clear line on
stderr (exit code 2). Unexpected errors are logged with their traceback in the data folder and
reported in one line; TUTOR_DEBUG=1 shows the traceback instead.
It holds no retrieval or ranking logic of its own.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import tutor  # noqa: F401  (sets the offline switches before any library is imported)
from tutor.errors import IndexNotReady, TutorError

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
    parser.add_argument("--embedder", help="'e5' o la carpeta de un modelo sentence-transformers (TUTOR_EMBEDDER)")
    sub = parser.add_subparsers(dest="command", metavar="COMANDO")

    p = sub.add_parser("ingest", help="indexa el material del curso (incremental)")
    p.add_argument("--rebuild", action="store_true", help="borra el índice y lo construye desde cero")
    p.add_argument("--quiet", action="store_true", help="sin barra de progreso")
    p.set_defaults(run=cmd_ingest)

    p = sub.add_parser("retrieve", help="muestra los pasajes del curso para una pregunta")
    p.add_argument("question")
    p.add_argument("--k", type=int, default=None, help="número de pasajes (por defecto 5)")
    p.add_argument("--json", action="store_true", help="salida JSON")
    p.set_defaults(run=cmd_retrieve)

    p = sub.add_parser("eval", help="mide la recuperación sobre un conjunto JSONL")
    p.add_argument("--dataset", type=Path, required=True)
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--json", action="store_true", help="un objeto JSON en stdout")
    p.set_defaults(run=cmd_eval)

    p = sub.add_parser("chat", help="conversa en la terminal (respuestas con los pasajes del curso)")
    p.set_defaults(run=cmd_chat)

    p = sub.add_parser("serve", help="abre el tutor en el navegador")
    p.add_argument("--host", default=None)
    p.add_argument("--port", type=int, default=None)
    p.set_defaults(run=cmd_serve)
    return parser


def _settings(args: argparse.Namespace):  # -> Settings
    from pydantic import ValidationError

    from tutor.config import Settings

    overrides = {
        key: value
        for key, value in {
            "data_dir": args.data_dir,
            "knowledge_dir": args.knowledge_dir,
            "embedder": args.embedder,
            "host": getattr(args, "host", None),
            "port": getattr(args, "port", None),
        }.items()
        if value is not None
    }
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"TUTOR_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()
        )
        raise TutorError(f"Configuración no válida: {problems}") from exc


def cmd_ingest(args: argparse.Namespace, settings) -> int:
    from tutor.embed import load_embedder
    from tutor.index import ingest

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


def cmd_retrieve(args: argparse.Namespace, settings) -> int:
    retriever = _retriever(settings)
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
        print(_indent(p.chunk.text), end="\n\n")
    return 0


def cmd_eval(args: argparse.Namespace, settings) -> int:
    from tutor.evaluate import load_dataset, retrieval_scores
    from tutor.retrieve import search_query

    dataset = load_dataset(args.dataset)
    for error in dataset.errors:
        print(f"{args.dataset}: {error}", file=sys.stderr)
    retriever = _retriever(settings)
    depth = max(args.k, 5)

    def ranked(item):
        query = search_query(item.question, item.history)
        return [p.section_id for p in retriever.search(query, depth)]

    result = {"n": len(dataset.items), "malformed": len(dataset.errors), "k": args.k}
    result["retrieval"] = retrieval_scores(dataset.items, ranked)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        _print_eval(result)
    return 1 if dataset.errors else 0


def cmd_chat(args: argparse.Namespace, settings) -> int:
    from tutor.retrieve import clean_query, search_query

    retriever = _retriever(settings, repair=True)
    history: list[dict[str, str]] = []
    print("Tutor del curso de LLMs. Escriba su pregunta (Ctrl-D para salir).")
    while True:
        try:
            question = input("\n> ").strip()
        except EOFError:
            print()
            return 0
        if not question:
            continue
        try:
            clean_query(question, settings.max_query_chars)
            passages = retriever.search(search_query(question, history))
        except TutorError as exc:
            print(exc)
            continue
        from tutor.ui import extractive_reply

        print(extractive_reply(passages))
        history.append({"role": "user", "content": question})


def cmd_serve(args: argparse.Namespace, settings) -> int:
    from tutor.ui import build_ui

    retriever = _retriever(settings, repair=True)
    app = build_ui(retriever, settings)
    print(f"Tutor en http://{settings.host}:{settings.port}  (Ctrl-C para salir)")
    app.launch(server_name=settings.host, server_port=settings.port, share=False)
    return 0


def _retriever(settings, *, repair: bool = False):
    """Open the index; build it the first time. With repair, a damaged index is rebuilt too."""
    from tutor.embed import load_embedder
    from tutor.index import Index, ingest
    from tutor.retrieve import Retriever

    embedder = load_embedder(settings)
    first_time = not (settings.index_dir / "manifest.json").exists()
    try:
        if first_time:
            print("Primera ejecución: construyendo el índice del curso…", file=sys.stderr)
            ingest(settings, embedder)
        index = Index.open(settings, embedder)
    except IndexNotReady as exc:
        if not repair:
            raise
        print(f"Aviso: {exc}\nReconstruyendo el índice…", file=sys.stderr)
        ingest(settings, embedder, rebuild=True)
        index = Index.open(settings, embedder)
    return Retriever(index, settings)


def _print_eval(result: dict) -> None:
    r = result["retrieval"]
    print(f"{result['n']} ítems ({result['malformed']} mal formados); recuperación sobre {r['n']}:")
    print(f"  hit@1 {r['hit@1']}  hit@3 {r['hit@3']}  hit@5 {r['hit@5']}  MRR {r['mrr']}  "
          f"recall@5 multi-sección {r['all_sections_recall@5']}")
    for group in ("by_language", "by_kind"):
        for name, g in r[group].items():
            print(f"  {name:<14} n={g['n']:<3} hit@1 {g['hit@1']}  hit@5 {g['hit@5']}  MRR {g['mrr']}")
    if r["misses@5"]:
        print("  fallos en el top 5: " + ", ".join(r["misses@5"]))


def _indent(text: str) -> str:
    return "\n".join("   " + line for line in text.splitlines())


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
