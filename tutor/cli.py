"""Command line: tutor ingest | retrieve | eval | gate [train] | ask | chat | quiz [build|eval] | serve |
model info|check | models list|install|remove|setup|probe | data export|purge.

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
from typing import TYPE_CHECKING, Any

from tutor.cli_models import add_parser as add_models_parser
from tutor.errors import IndexNotReady, TutorError  # importing tutor sets the offline switches first

if TYPE_CHECKING:  # the commands import what they need when they run: `tutor --help` stays quick
    from tutor.config import Settings
    from tutor.evaluate import EvalItem
    from tutor.index import Index
    from tutor.pipeline import Answer, Plan, Tutor
    from tutor.retrieve import Retriever

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
    _course_commands(sub)
    _tutor_commands(sub)
    _admin_commands(sub)
    return parser


def _course_commands(sub: Any) -> None:
    """ingest, retrieve, eval, gate: the index and what is measured on it."""
    p = sub.add_parser("ingest", help="indexa el material del curso (incremental)")
    p.add_argument("--rebuild", action="store_true", help="borra el índice y lo construye desde cero")
    p.add_argument("--quiet", action="store_true", help="sin barra de progreso")
    p.set_defaults(run=cmd_ingest)

    p = sub.add_parser("retrieve", help="muestra los pasajes del curso para una pregunta")
    p.add_argument("question")
    p.add_argument("--k", type=int, default=None, help="número de pasajes (por defecto 5)")
    p.add_argument("--json", action="store_true", help="salida JSON")
    p.set_defaults(run=cmd_retrieve)

    p = sub.add_parser("eval", help="mide la recuperación sobre un conjunto JSONL, o el verificador (--claims)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--dataset", type=Path)
    which.add_argument("--claims", type=Path, help="frases etiquetadas (eval/claims.jsonl): precisión y recall "
                       "del verificador por parte y por modelo")  # fmt: skip
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--json", action="store_true", help="un objeto JSON en stdout")
    p.add_argument("--generate", action="store_true", help="también responde cada ítem y mide las respuestas")
    p.add_argument("--limit", type=int, default=None, help="con --generate: solo los N primeros ítems")
    p.add_argument("--model", choices=["auto", "echo", "none"], default="auto", help="con --generate")
    p.set_defaults(run=cmd_eval)

    p = sub.add_parser("gate", help="¿del curso, ajeno o inseguro? 'tutor gate train' reentrena el filtro")
    p.add_argument("message", nargs="+", help="el mensaje del estudiante, o la palabra 'train' sola")
    p.add_argument("--history", type=Path, help="archivo JSON con los turnos anteriores [{role, content}]")
    p.add_argument("--json", action="store_true", help="un objeto JSON en stdout")
    p.add_argument("--examples", type=Path, help="train: ejemplos JSONL (por defecto, los del paquete)")
    p.add_argument("--out", type=Path, help="train: carpeta del modelo (TUTOR_GATE_MODEL_DIR o el paquete)")
    p.set_defaults(run=cmd_gate)


def _tutor_commands(sub: Any) -> None:
    """ask, chat, quiz, serve: the tutor itself."""
    p = sub.add_parser("ask", help="hace una pregunta al tutor y muestra la respuesta verificada")
    p.add_argument("question")
    p.add_argument("--mode", choices=["explain", "socratic"], default="explain")
    p.add_argument("--history", type=Path, help="archivo JSON con los turnos anteriores [{role, content}]")
    p.add_argument("--json", action="store_true", help="un objeto JSON en stdout")
    p.add_argument("--show-prompt", action="store_true", help="muestra el prompt exacto que ve el modelo")
    p.add_argument("--model", choices=["auto", "echo", "none"], default="auto",
                   help="auto: el modelo configurado; none: solo respuestas citadas del curso")  # fmt: skip
    p.set_defaults(run=cmd_ask)

    p = sub.add_parser("chat", help="conversa con el tutor en la terminal")
    p.add_argument("--mode", choices=["explain", "socratic"], default="explain")
    p.add_argument("--model", choices=["auto", "echo", "none"], default="auto")
    p.set_defaults(run=cmd_chat)

    p = sub.add_parser("quiz", help="practica con preguntas del curso; 'quiz build' y 'quiz eval' para el banco")
    p.add_argument("action", nargs="?", choices=["build", "eval"],
                   help="build: (re)genera el banco; eval: acuerdo de la corrección con eval/grading.jsonl; "
                   "sin acción: un cuestionario en la terminal")  # fmt: skip
    p.add_argument("--section", help="solo preguntas de esta sección y sus subsecciones (p. ej. 3.3)")
    p.add_argument("--n", type=int, default=5, help="número de preguntas (por defecto 5)")
    p.add_argument("--language", default="es", help="idioma de los textos del tutor (es, en, pt, fr, ca, it, de)")
    p.add_argument("--rebuild", action="store_true", help="build: regenera todas las secciones")
    p.add_argument("--tune", action="store_true", help="eval: reajusta los pesos con la parte de ajuste")
    p.add_argument("--json", action="store_true", help="build/eval: salida JSON")
    p.set_defaults(run=cmd_quiz)

    p = sub.add_parser("serve", help="abre el tutor en el navegador")
    p.add_argument("--host", default=None)
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--model", choices=["auto", "echo", "none"], default="auto",
                   help="echo: sin modelo, para trabajar en la interfaz; none: solo respuestas citadas")  # fmt: skip
    p.set_defaults(run=cmd_serve)


def _admin_commands(sub: Any) -> None:
    """model info|check, data export|purge: the generator and what the app stored."""
    p = sub.add_parser("model", help="el modelo generador: info | check")
    actions = p.add_subparsers(dest="model_command", metavar="ACCIÓN", required=True)
    m = actions.add_parser("info", help="archivo, tamaño, arquitectura, contexto, estilo de prompt, hilos")
    m.add_argument("--json", action="store_true", help="salida JSON")
    m.set_defaults(run=cmd_model_info)
    m = actions.add_parser("check", help="carga el modelo, genera unas palabras y mide tokens/s")
    m.add_argument("--max-tokens", type=int, default=32)
    m.set_defaults(run=cmd_model_check)

    add_models_parser(sub)  # tutor models list | install | remove | setup | probe (issue 16)

    p = sub.add_parser("data", help="lo que guarda el tutor (valoraciones, estadísticas): export | purge")
    actions = p.add_subparsers(dest="data_command", metavar="ACCIÓN", required=True)
    d = actions.add_parser("export", help="exporta todo lo guardado (JSON; CSV si el archivo acaba en .csv)")
    d.add_argument("--out", type=Path, help="archivo de salida (por defecto, JSON en la salida estándar)")
    d.set_defaults(run=cmd_data_export)
    d = actions.add_parser("purge", help="borra todo lo guardado (valoraciones, preguntas, estadísticas)")
    d.add_argument("--yes", action="store_true", help="no pide confirmación")
    d.set_defaults(run=cmd_data_purge)


def _settings(args: argparse.Namespace) -> Settings:
    from pydantic import ValidationError

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
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(f"TUTOR_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        raise TutorError(f"Configuración no válida: {problems}") from exc


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


def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    from tutor.evaluate import load_dataset, retrieval_scores
    from tutor.retrieve import search_query

    if args.claims:
        return _claims_eval(args, settings)
    dataset = load_dataset(args.dataset)
    for error in dataset.errors:
        print(f"{args.dataset}: {error}", file=sys.stderr)
    retriever = _retriever(settings)
    depth = max(args.k, 5)

    def ranked(item: EvalItem) -> list[str]:
        query = search_query(item.question, item.history)
        return [p.section_id for p in retriever.search(query, depth, question=item.question)]

    result = {"n": len(dataset.items), "malformed": len(dataset.errors), "k": args.k}
    result["retrieval"] = retrieval_scores(dataset.items, ranked)
    result.update(_gate_eval(dataset.items, retriever.index, settings))
    if args.generate:
        result["answers"] = _answer_eval(dataset.items[: args.limit], retriever.index, settings, args.model)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        _print_eval(result)
    return 1 if dataset.errors else 0


def _claims_eval(args: argparse.Namespace, settings: Settings) -> int:
    """`tutor eval --claims FILE`: re-run today's verifier on the stored answers (index and embedder, no model)."""
    from tutor.claims import claims_report, load_claims, summary, verifier_decide
    from tutor.language import LanguageDetector
    from tutor.verify import Verifier

    claims = load_claims(args.claims)
    for error in claims.errors:
        print(f"{args.claims}: {error}", file=sys.stderr)
    index = _index(settings)
    detector = LanguageDetector()
    decide, stale = verifier_decide(Verifier(index, detect_language=lambda t: detector.detect(t, ())), index)
    result = claims_report(claims.items, decide, verifier="tutor.verify.Verifier")
    result.update(malformed=len(claims.errors), stale_passages=stale())
    print(json.dumps({"claims": result}, ensure_ascii=False) if args.json else summary(result))
    return 1 if claims.errors else 0


def _gate_eval(items: Sequence[EvalItem], index: Index, settings: Settings) -> dict[str, Any]:
    """The "language" and "gate" keys of `tutor eval` (issue 4), measured with the shipped gate."""
    from tutor.evaluate import gate_scores, language_scores
    from tutor.gate import Gate
    from tutor.language import LanguageDetector

    detector, gate = LanguageDetector(), Gate.load(index, settings)

    def decide(item: EvalItem) -> tuple[str, str]:
        decision = gate.check(item.question, detector.detect(item.question, item.history), item.history)
        return decision.label, decision.reason

    return {
        "language": language_scores(items, lambda item: detector.detect(item.question, item.history)),
        "gate": gate_scores(items, decide),
    }


def _answer_eval(items: Sequence[EvalItem], index: Index, settings: Settings, model: str) -> dict[str, Any]:
    """The "answers" key of `tutor eval --generate` (issue 5): every item answered with its history."""
    from tqdm import tqdm

    from tutor.evaluate import answer_scores
    from tutor.language import LanguageDetector
    from tutor.pipeline import build_tutor

    tutor, notices = build_tutor(settings, model=model, index=index)
    for notice in notices:
        print(f"Aviso: {notice}", file=sys.stderr)
    rows = []
    for item in tqdm(items, desc="Respondiendo", unit="pregunta", disable=None):
        final = None
        for reply in tutor.answer(tutor.plan(item.question, list(item.history))):
            final = reply
        assert final is not None, "an answer always ends with a final reply"
        rows.append((item, final.answer, final.text))
    detector = LanguageDetector()
    return answer_scores(rows, lambda text: detector.detect(text, ()))


def cmd_gate(args: argparse.Namespace, settings: Settings) -> int:
    from dataclasses import asdict

    from tutor.gate import Gate, model_folder, train_gate
    from tutor.language import LanguageDetector

    index = _index(settings, repair=True)
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
    history = _read_history(args.history) if args.history else []
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


def cmd_ask(args: argparse.Namespace, settings: Settings) -> int:
    history = _read_history(args.history) if args.history else []
    tutor, _ = _tutor(settings, args.model)
    plan = tutor.plan(args.question, history, args.mode)
    if args.show_prompt and not args.json:
        print(_show_prompt(plan), end="\n\n")
    final = None
    for reply in tutor.answer(plan):
        final = reply
    assert final is not None and final.answer is not None
    answer = final.answer
    if args.json:
        print(json.dumps(_answer_json(answer, show_prompt=args.show_prompt), ensure_ascii=False))
    else:
        print(final.text)
    return 0


def cmd_chat(args: argparse.Namespace, settings: Settings) -> int:
    tutor, _ = _tutor(settings, args.model)
    history: list[dict[str, Any]] = []
    print(tutor.prompts.reply("welcome", "es"))
    print("\n(Ctrl-D para salir; /socratico o /explicar cambia el modo)")
    mode = args.mode
    while True:
        try:
            question = input("\n> ").strip()
        except EOFError:
            print()
            return 0
        if question in ("/socratico", "/socrático", "/explicar"):
            mode = "explain" if question == "/explicar" else "socratic"
            print(f"Modo: {mode}")
            continue
        if not question:
            continue
        shown = ""
        for reply in tutor.answer(tutor.plan(question, history, mode)):
            if not reply.final and not shown:
                print("(buscando en el curso…)", flush=True)
            shown = reply.text
            if reply.final and reply.answer is not None:
                print(reply.text)
                history.append({"role": "user", "content": question})
                history.append({"role": "assistant", "content": reply.answer.text, "meta": reply.answer.meta})


def _tutor(settings: Settings, model: str) -> tuple[Tutor, list[str]]:
    from tutor.pipeline import build_tutor

    index = _index(settings, repair=True)
    tutor, notices = build_tutor(settings, model=model, index=index)
    for notice in notices:
        print(f"Aviso: {notice}", file=sys.stderr)
    return tutor, notices


def _read_history(path: Path) -> list[Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise TutorError(f"No existe el archivo de historial «{path}».") from exc
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise TutorError(f"El historial «{path}» no es JSON válido: {exc}") from exc
    if not isinstance(data, list):
        raise TutorError(f"El historial «{path}» debe ser una lista de turnos {{role, content}}.")
    return data


def _show_prompt(plan: Plan) -> str:
    from tutor.types import TextPrompt

    if plan.prompt is None:
        return f"(sin prompt: la respuesta «{plan.kind}» se decide sin el modelo)"
    if isinstance(plan.prompt, TextPrompt):
        return plan.prompt.text
    return "\n\n".join(f"### {m.role}\n{m.content}" for m in plan.prompt.messages)


def _answer_json(answer: Answer, *, show_prompt: bool = False) -> dict[str, Any]:
    plan = answer.plan
    out = {
        "question": plan.question,
        "language": plan.language,
        "gate": {
            "label": plan.gate.label,
            "score": round(float(plan.gate.score), 4),
            "reason": plan.gate.reason,
        },
        "kind": plan.kind,
        "answer": answer.text,
        "citations": list(answer.citations),
        "excerpts": [
            {"section": p.section_id, "title": p.chunk.section_title, "text": p.chunk.text} for p in plan.passages
        ],  # fmt: skip
        "verified": answer.verified,
        "fallback": answer.fallback,
        "removed": [{"sentence": s, "why": why} for s, why in answer.removed],
        "notice": answer.notice,  # why the course's sentences are shown instead of the model's text
        "general": answer.general,  # outside the course, not checked against it (TUTOR_GENERAL_ANSWERS)
        "mode": plan.mode,
        "timings": {
            k: answer.timings.get(k) for k in ("gate_ms", "retrieve_ms", "ttft_ms", "first_visible_ms", "total_ms")
        },  # fmt: skip
    }
    if show_prompt:
        out["prompt"] = _show_prompt(plan)
    return out


def cmd_quiz(args: argparse.Namespace, settings: Settings) -> int:
    """tutor quiz build | eval | [--section S] [--n N]: the practice bank, its grading, a terminal quiz."""
    command = {"build": cmd_quiz_build, "eval": cmd_quiz_eval, None: cmd_quiz_terminal}[args.action]
    return command(args, settings)


def cmd_quiz_build(args: argparse.Namespace, settings: Settings) -> int:
    """tutor quiz build [--rebuild] [--json]: (re)build the question bank; its size by type and time."""
    from tutor.practice.bank import build_bank

    index = _index(settings, repair=True)
    bank = build_bank(index, settings.data_dir, settings.knowledge_dir, rebuild=args.rebuild)
    sections = len({i.section for i in bank.items})
    if args.json:
        print(json.dumps({"items": len(bank.items), "by_type": bank.counts(), "sections": sections,
                          "stats": bank.stats, "problems": bank.problems}, ensure_ascii=False))  # fmt: skip
    else:
        kinds = ", ".join(f"{k} {n}" for k, n in bank.counts().items())
        print(f"{len(bank.items)} preguntas en {sections} secciones ({kinds}); {bank.stats['built']} secciones "
              f"generadas, {bank.stats['reused']} sin cambios, en {bank.stats['seconds']:.1f} s.")  # fmt: skip
    for problem in bank.problems:
        print(f"Aviso: {problem}", file=sys.stderr)
    return 0


def cmd_quiz_eval(args: argparse.Namespace, settings: Settings) -> int:
    """tutor quiz eval [--tune] [--json]: grading agreement with eval/grading.jsonl, per part and language."""
    import time

    from tutor.practice.bank import build_bank
    from tutor.practice.grade import Grader, grading_file, load_labelled_answers, measure

    index = _index(settings, repair=True)
    started = time.perf_counter()
    bank = build_bank(index, settings.data_dir, settings.knowledge_dir)
    try:
        result = measure(Grader(index), load_labelled_answers(grading_file()), {i.id: i for i in bank.items},
                         tune=args.tune)  # fmt: skip
    except ValueError as exc:
        raise TutorError(f"eval/grading.jsonl: {exc}") from exc
    result["seconds"] = round(time.perf_counter() - started, 1)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return 0
    for split, name in (("tune", "ajuste"), ("held", "reservada")):
        r = result[split]
        langs = "  ".join(f"{k} {v}" for k, v in r.items() if len(k) == 2)
        print(f"Acuerdo con las etiquetas, parte de {name}: {r['agreement']} (n={r['n']}; {langs})")
    if args.tune:
        print(f"Pesos ajustados (cópielos en tutor/practice/grade.py WEIGHTS): {json.dumps(result['weights'])}")
    return 0


def cmd_quiz_terminal(args: argparse.Namespace, settings: Settings) -> int:
    """tutor quiz [--section S] [--n N] [--language L]: a quiz in the terminal, answers read from stdin."""
    from tutor.practice import Practice, mastery, mastery_markdown
    from tutor.prompts import PromptLibrary

    index = _index(settings, repair=True)
    prompts = PromptLibrary(settings.prompts_dir)
    practice = Practice.load(index, settings.data_dir, settings.knowledge_dir, prompts)
    if args.section and not practice.bank.of_section(args.section, with_children=True):
        raise TutorError(f"No hay preguntas de la sección {args.section}. Secciones: {', '.join(practice.bank.order)}")
    metas: list[dict[str, Any]] = []
    for number in range(1, max(1, args.n) + 1):
        item, _ = practice.next_item(metas, [], target=args.section)
        if item is None:
            break
        print(f"\n{practice.ask(item, args.language, number)}\n> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line:  # end of input (Ctrl-D, or the end of a piped file)
            print()
            break
        grade = practice.grader.grade(item, line.strip())
        print(practice.feedback(item, grade, args.language))
        result = {"item": item.id, "section": item.section, "verdict": grade.verdict}
        metas.append({"quiz": {"pending": {"id": item.id}, "result": result}})
    table = mastery(metas)
    if table:
        print("\n" + mastery_markdown(table, args.language, prompts=prompts, titles=practice.bank.titles))
    return 0


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import signal

    from tutor.app.heap import limit_arenas
    from tutor.app.lock import acquire
    from tutor.app.ui import build_ui, launch, open_store

    acquire(settings.data_dir, "serve")  # one app per data folder, held until the process ends
    limit_arenas(settings.malloc_arenas)  # before Gradio's worker threads each grow an arena of their own
    # SIGTERM (systemd, docker stop, kill) stops the app like Ctrl-C: Gradio closes its server and
    # open files are closed by their `finally`/`with`, instead of dying between two writes.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    tutor, notices = _tutor(settings, args.model)

    def shut_down(signum: int, frame: object) -> None:
        tutor.stopping.set()  # a reply being generated ends now, with the course's sentences
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, shut_down)
    signal.signal(signal.SIGINT, shut_down)
    store, store_notices = open_store(settings)
    app = build_ui(tutor, settings=settings, store=store, notices=notices + store_notices)
    print(f"Tutor en http://{settings.host}:{settings.port}  (Ctrl-C para salir)")
    launch(app, settings)
    return 0


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


def _retriever(settings: Settings, *, repair: bool = False) -> Retriever:
    from tutor.retrieve import Retriever

    return Retriever(_index(settings, repair=repair), settings)


def _index(settings: Settings, *, repair: bool = False) -> Index:
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


def _print_eval(result: dict[str, Any]) -> None:
    r = result["retrieval"]
    print(f"{result['n']} ítems ({result['malformed']} mal formados); recuperación sobre {r['n']}:")
    print(
        f"  hit@1 {r['hit@1']}  hit@3 {r['hit@3']}  hit@5 {r['hit@5']}  MRR {r['mrr']}  "
        f"recall@5 multi-sección {r['all_sections_recall@5']}"
    )
    for group in ("by_language", "by_kind"):
        for name, g in r[group].items():
            print(f"  {name:<14} n={g['n']:<3} hit@1 {g['hit@1']}  hit@5 {g['hit@5']}  MRR {g['mrr']}")
    if r["topic_change"]["n"]:
        t = r["topic_change"]
        print(f"  cambio de tema n={t['n']:<3} hit@1 {t['hit@1']}  hit@5 {t['hit@5']}  MRR {t['mrr']}")
    if r["misses@5"]:
        print("  fallos en el top 5: " + ", ".join(r["misses@5"]))
    if "gate" in result:
        g, lang = result["gate"], result["language"]
        print(f"Idioma: exactitud {lang['accuracy']} (n={lang['n']}), "
              f"mensajes de ≤3 palabras {lang['short_accuracy']}")  # fmt: skip
        print(
            f"Filtro: exactitud {g['accuracy']} (n={g['n']}), falsos rechazos {g['false_refusal_rate']}, "
            f"recall inseguro {g['unsafe_recall']}, recall fuera de tema {g['off_topic_recall']}"
        )
        for gold, row in g["confusion"].items():
            print(f"  {gold:<10} → " + "  ".join(f"{pred} {n}" for pred, n in row.items()))
        for name, f in g["by_family"].items():  # reason: the reply fits the family (e.g. role-play → injection)
            print(f"  familia {name:<16} n={f['n']:<3} exactitud {f['accuracy']}  motivo {f['reason_accuracy']}")


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
