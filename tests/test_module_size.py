"""Module and function size, as the house style asks: modules 50–300 lines, over ~400 only with a reason
written here; functions up to ~60 lines, longer ones only with a reason written here.

A ceiling just above today's length makes growth a decision (raise it with a reason, or split the
module or the function into named steps) instead of drift. Sub-packages (gate/, practice/, app/) count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "tutor"
LIMIT = 400
REASONS = {
    "practice/bank.py": (700, "the item rules (definitions, clozes, multiple choice, true/false, compare) share "
                         "one vocabulary and the bank that caches them per section; split the rules out when it grows"),
    "index.py": (560, "ingestion keeps three vector layers in sync and opening self-checks all of them"),
    "app/instructor.py": (560, "three panels of one Gradio tab, each handler re-checking the session server-side"),
    "app/ui.py": (440, "the chat page's handlers, widget builders and events, and the Conversation the API shares"),
    "pipeline.py": (520, "Tutor.plan/answer read top to bottom, with the prompt fitting and the reply render"),
    "app/store.py": (450, "the SQLite schema, its migrations, the lock/full-disk retries and the analytics queries"),
}  # fmt: skip
FUNCTION_LIMIT = 60
FUNCTION_REASONS: dict[str, tuple[int, str]] = {}


def _files() -> dict[str, Path]:
    return {p.relative_to(PACKAGE).as_posix(): p for p in sorted(PACKAGE.rglob("*.py"))}


def _functions(name: str, path: Path) -> dict[str, int]:
    """'module.py:Class.method' -> its length in lines (nested functions count in their parent too)."""
    lengths: dict[str, int] = {}

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                qualified = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    lengths[f"{name}:{qualified}"] = (child.end_lineno or child.lineno) - child.lineno + 1
                walk(child, f"{qualified}.")

    walk(ast.parse(path.read_text(encoding="utf-8")), "")
    return lengths


def test_sub_packages_are_walked() -> None:
    assert {"gate/__init__.py", "gate/rules.py", "practice/bank.py", "app/ui.py", "text.py"} <= set(_files())


def test_modules_stay_small_or_say_why() -> None:
    sizes = {name: len(p.read_text(encoding="utf-8").splitlines()) for name, p in _files().items()}
    over = {name: n for name, n in sizes.items() if n > REASONS.get(name, (LIMIT, ""))[0]}
    assert not over, f"split these modules or give a reason in REASONS: {over}"
    stale = {name for name, (ceiling, _) in REASONS.items() if sizes.get(name, 0) <= LIMIT}
    assert not stale, f"back under {LIMIT} lines: drop them from REASONS: {stale}"


def test_functions_stay_short_or_say_why() -> None:
    lengths = {k: n for name, p in _files().items() for k, n in _functions(name, p).items()}
    over = {k: n for k, n in lengths.items() if n > FUNCTION_REASONS.get(k, (FUNCTION_LIMIT, ""))[0]}
    assert not over, f"split these functions into named steps or give a reason in FUNCTION_REASONS: {over}"
    stale = {k for k in FUNCTION_REASONS if lengths.get(k, 0) <= FUNCTION_LIMIT}
    assert not stale, f"back under {FUNCTION_LIMIT} lines: drop them from FUNCTION_REASONS: {stale}"


def test_the_length_counter_counts() -> None:
    """The check itself can fail: a 61-line function in a scratch module is found."""
    source = "class A:\n    def long(self) -> None:\n" + "        pass\n" * 60
    scratch = Path(__file__).with_name("_scratch_module.py")
    try:
        scratch.write_text(source, encoding="utf-8")
        assert _functions("x.py", scratch) == {"x.py:A.long": 61}
    finally:
        scratch.unlink()
