"""`tutor quiz [build | eval]`: the practice bank, its grading, and a quiz in the terminal."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING, Any

from tutor.cli.common import open_index
from tutor.errors import TutorError

if TYPE_CHECKING:
    from tutor.config import Settings


def add_parsers(sub: Any) -> None:
    """quiz: added to the CLI's subparsers."""
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


def cmd_quiz(args: argparse.Namespace, settings: Settings) -> int:
    """tutor quiz build | eval | [--section S] [--n N]: the practice bank, its grading, a terminal quiz."""
    command = {"build": cmd_quiz_build, "eval": cmd_quiz_eval, None: cmd_quiz_terminal}[args.action]
    return command(args, settings)


def cmd_quiz_build(args: argparse.Namespace, settings: Settings) -> int:
    """tutor quiz build [--rebuild] [--json]: (re)build the question bank; its size by type and time."""
    from tutor.practice.bank import build_bank

    index = open_index(settings, repair=True)
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

    from tutor.practice.bank import build_bank
    from tutor.practice.grade import Grader, grading_file, load_labelled_answers, measure

    index = open_index(settings, repair=True)
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

    index = open_index(settings, repair=True)
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
