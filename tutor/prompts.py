"""Prompt library: every text the tutor says or sends to a model lives in an instructor-owned file.

A template is a Markdown file under prompts/ with a front-matter header that declares its variables:

    ---
    variables: [question, context]
    stop: ["\\n\\n"]          # optional, any other keys are kept as metadata
    ---
    Pregunta: $question

Bodies use string.Template (`$question`, `${context}`, `$$` for a dollar sign). Loading validates
that every placeholder is declared and reports `prompts/answer.md: line 12: unknown variable
'contexto'`. Files are re-read when they change; a broken edit keeps the last good version in
service while the error is logged and listed in `errors`. It does not choose which template to use
(the pipeline does) and never builds prompt text in Python.
"""

from __future__ import annotations

import logging
import re
import string
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tutor.errors import TutorError
from tutor.text import split_front_matter

log = logging.getLogger(__name__)

LANGUAGES = ("es", "en", "pt", "fr", "ca", "it", "de")


class PromptTemplateError(TutorError):
    """A template file that cannot be used; the message names the file and the line."""


@dataclass(frozen=True)
class Template:
    name: str  # path under prompts/ without ".md": "chat/answer", "replies/es/off_topic"
    variables: tuple[str, ...]
    meta: dict[str, Any]
    body: str
    stamp: tuple[float, int]  # (mtime, size) of the file this was read from

    def render(self, values: dict[str, Any]) -> str:
        missing = [v for v in self.variables if v not in values]
        if missing:
            raise PromptTemplateError(f"prompts/{self.name}.md: faltan valores para {', '.join(missing)}")
        return string.Template(self.body).substitute({v: str(values[v]) for v in self.variables}).strip()


@dataclass
class PromptLibrary:
    """Loads, validates and hot-reloads the templates of one prompts/ folder."""

    root: Path
    errors: dict[str, str] = field(default_factory=dict)  # name -> current problem with its file
    _good: dict[str, Template] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _pinned: dict[str, Template] = field(default_factory=dict)  # served instead of the file (previews)

    def render(self, name: str, /, **values: Any) -> str:
        """The template `name` filled with `values` (extra values are ignored)."""
        return self.get(name).render(values)

    def reply(self, kind: str, language: str, /, **values: Any) -> str:
        """A text the student reads, in their language, falling back to Spanish."""
        for lang in (language, "es"):
            if (self.root / "replies" / lang / f"{kind}.md").is_file() or f"replies/{lang}/{kind}" in self._good:
                return self.render(f"replies/{lang}/{kind}", **values)
        raise PromptTemplateError(f"No existe prompts/replies/es/{kind}.md: restaure el archivo.")

    def get(self, name: str) -> Template:
        """The current good version of a template, re-read first if its file changed."""
        if name in self._pinned:
            return self._pinned[name]
        path = self.root / f"{name}.md"
        with self._lock:
            good = self._good.get(name)
            try:
                stat = path.stat()
            except FileNotFoundError:
                if good is None:
                    raise PromptTemplateError(f"No existe prompts/{name}.md.") from None
                self._problem(name, f"prompts/{name}.md: el archivo ya no existe; se usa la última versión válida")
                return good
            if good is not None and good.stamp == (stat.st_mtime, stat.st_size):
                return good
            try:
                template = load_template(path, name)
            except PromptTemplateError as exc:
                if good is None:
                    raise
                self._problem(name, f"{exc} (se usa la última versión válida)")
                return good
            self._good[name] = template
            self.errors.pop(name, None)
            return template

    def validate(self, name: str, text: str) -> Template:
        """`text` checked as the file prompts/<name>.md would be, without writing it (the panel's editor)."""
        return parse_template(text, name, (0.0, len(text.encode("utf-8"))))

    def reload(self, name: str) -> Template:
        """Re-read one file now, even if its timestamp looks unchanged (just saved by the panel)."""
        with self._lock:
            self._good.pop(name, None)
        return self.get(name)

    def with_text(self, name: str, text: str) -> PromptLibrary:
        """A copy that serves `text` (validated) as template `name`; the file and this library are untouched."""
        with self._lock:
            good = dict(self._good)
        return PromptLibrary(self.root, _good=good, _pinned={**self._pinned, name: self.validate(name, text)})

    def names(self) -> list[str]:
        """Every template under the folder (README.md files are documentation, not templates)."""
        paths = (p for p in self.root.rglob("*.md") if p.name != "README.md")
        return sorted(p.relative_to(self.root).with_suffix("").as_posix() for p in paths)

    def check(self) -> list[str]:
        """Load every file now; the problems found (an empty list when all are valid)."""
        problems = []
        for name in self.names():
            try:
                self.get(name)
            except PromptTemplateError as exc:
                problems.append(str(exc))
        return problems + [e for n, e in sorted(self.errors.items()) if e not in problems]

    def _problem(self, name: str, message: str) -> None:
        if self.errors.get(name) != message:
            log.warning("%s", message)
        self.errors[name] = message


def load_template(path: Path, name: str) -> Template:
    """Read and validate one file; PromptTemplateError names the file and the line of the problem."""
    where = f"prompts/{name}.md"
    try:
        stat = path.stat()
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise PromptTemplateError(f"{where}: no está en UTF-8") from exc
    except OSError as exc:
        raise PromptTemplateError(f"{where}: no se puede leer ({exc.strerror})") from exc
    return parse_template(text, name, (stat.st_mtime, stat.st_size))


def parse_template(text: str, name: str, stamp: tuple[float, int]) -> Template:
    """Validate a template's text; PromptTemplateError names prompts/<name>.md and the line."""
    where = f"prompts/{name}.md"
    header, body = split_front_matter(text)
    if header is None:
        raise PromptTemplateError(f"{where}: line 1: falta la cabecera '---' con la lista 'variables:'")
    try:
        meta = yaml.safe_load(header) or {}
    except yaml.YAMLError as exc:
        raise PromptTemplateError(f"{where}: la cabecera no es YAML válido ({exc})") from exc
    variables = meta.get("variables", []) if isinstance(meta, dict) else None
    if not isinstance(variables, list) or not all(isinstance(v, str) for v in variables):
        raise PromptTemplateError(f"{where}: line 2: 'variables' debe ser una lista de nombres")
    offset = text[: len(text) - len(body)].count("\n")
    template = string.Template(body)
    if not template.is_valid():
        bad = re.search(r"\$(?![A-Za-z_{$])|\$\{(?![A-Za-z_][A-Za-z0-9_]*\})", body)
        line = offset + body[: bad.start()].count("\n") + 1 if bad else offset + 1
        raise PromptTemplateError(f"{where}: line {line}: '$' suelto; escriba $$ para un signo de dólar")
    for identifier in template.get_identifiers():
        if identifier not in variables:
            found = re.search(rf"\$\{{?{re.escape(identifier)}\b", body)
            line = offset + body[: found.start()].count("\n") + 1 if found else offset + 1
            raise PromptTemplateError(f"{where}: line {line}: unknown variable '{identifier}'")
    return Template(name, tuple(variables), dict(meta), body, stamp)
