"""Knowledge files -> sections -> chunks of about 120 words, each knowing its section.

Reads Markdown (headings `# 3. Título`, `## 3.3. …`; front matter skipped), plain text (numbered
headings such as `3.3.1. Título` on their own line) and PDF (its text layer, through pypdf).
Material without numbers gets a stable id from its heading path ("notas/ejemplos").
It does not embed or store anything (index.py does) and never reads outside the knowledge folder.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from tutor.text import fold, sentences, split_front_matter
from tutor.types import Chunk

SUFFIXES = (".md", ".txt", ".pdf")
_MD_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_NUMBERED = re.compile(r"^(\d+(?:\.\d+)*)\.?\s+(\S.*)$")
# In plain text only multi-level numbers are headings: "1. Preentrenamiento:" is a list item.
_TXT_HEADING = re.compile(r"^(\d+\.\d+(?:\.\d+)*)\.?\s+(\S.{0,150})$")


class KnowledgeFileError(Exception):
    """A knowledge file that cannot be read; the message names the file and the fix."""


@dataclass(frozen=True)
class Section:
    id: str
    title: str
    text: str


def knowledge_files(folder: Path) -> list[Path]:
    """Every .md, .txt and .pdf file under the folder, in a stable order (hidden files skipped)."""
    files = [
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    ]
    return sorted(files, key=lambda p: p.relative_to(folder).as_posix())


def read_text(path: Path) -> str:
    """The text of one file; KnowledgeFileError with a fix when it has none we can use."""
    try:
        if path.suffix.lower() == ".pdf":
            return _read_pdf(path)
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise KnowledgeFileError(f"{path.name}: el archivo desapareció durante la ingesta.") from exc
    except OSError as exc:
        raise KnowledgeFileError(f"{path.name}: no se puede leer ({exc.strerror}).") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise KnowledgeFileError(
            f"{path.name}: no está en UTF-8 (byte {exc.start}). Guárdelo como UTF-8 y vuelva a ingerir."
        ) from exc
    if "\x00" in text:
        raise KnowledgeFileError(f"{path.name}: parece un archivo binario, no texto.")
    return text


def _read_pdf(path: Path) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        pages = [page.extract_text() or "" for page in PdfReader(path).pages]
    except FileNotFoundError:
        raise
    except (PdfReadError, OSError, ValueError, KeyError) as exc:
        raise KnowledgeFileError(f"{path.name}: el PDF está dañado o no se puede leer ({exc}).") from exc
    text = "\n\n".join(pages)
    if not pages:
        raise KnowledgeFileError(f"{path.name}: el PDF no tiene páginas.")
    if len(text.split()) < 5:
        raise KnowledgeFileError(
            f"{path.name}: el PDF no tiene capa de texto (¿es un escaneo?). Conviértalo con OCR "
            "o copie el texto en un archivo .md."
        )
    return text


def split_sections(text: str, *, markdown: bool, fallback_title: str) -> list[Section]:
    """Sections in reading order; text before the first heading goes under the file's title."""
    file_id = fallback_title  # the file's name: a stable id for text before the first heading
    if markdown:
        front, text = _front_matter(text)
        fallback_title = front.get("title", fallback_title)
    sections: list[Section] = []
    path: list[tuple[int, str]] = []  # (level, title) of the open unnumbered headings
    current_id, current_title, lines = _slug(file_id), fallback_title, []
    in_fence = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        heading = None if in_fence else _heading(line, markdown)
        if heading is None:
            lines.append(line)
            continue
        sections.append(Section(current_id, current_title, "\n".join(lines).strip()))
        level, number, title = heading
        path = [(lv, t) for lv, t in path if lv < level] + [(level, title)]
        current_id = number or "/".join(_slug(t) for _, t in path)
        current_title, lines = title, []
    sections.append(Section(current_id, current_title, "\n".join(lines).strip()))
    return [s for s in sections if s.text]


def chunk_text(text: str, *, words: int, overlap: int) -> list[str]:
    """Windows of about `words` words cut at line and sentence ends, sharing up to `overlap` words."""
    units = sentences(text, max_words=words)
    windows: list[list[str]] = []
    current: list[str] = []
    fresh = 0  # words in `current` that the previous window does not have
    for unit in units:
        size = len(unit.split())
        if current and fresh and _count(current) + size > words:
            windows.append(current)
            current = _tail(current, overlap)
            fresh = 0
        current.append(unit)
        fresh += size
    if current and fresh:
        if windows and fresh < words // 4:  # a short remainder joins the previous window
            windows[-1] = windows[-1] + current[len(_tail(windows[-1], overlap)) :]
        else:
            windows.append(current)
    return ["\n".join(w) for w in windows]


def chunk_file(path: Path, root: Path, *, words: int = 120, overlap: int = 20) -> list[Chunk]:
    """All chunks of one knowledge file; raises KnowledgeFileError when it has no usable text."""
    source = path.relative_to(root).as_posix()
    text = read_text(path)
    sections = split_sections(text, markdown=path.suffix.lower() == ".md", fallback_title=path.stem)
    chunks: list[Chunk] = []
    for section in sections:
        for piece in chunk_text(section.text, words=words, overlap=overlap):
            embed = f"{section.id} {section.title}\n{piece}"
            chunks.append(
                Chunk(
                    id=f"{source}#{section.id}#{len(chunks)}",
                    source=source,
                    section_id=section.id,
                    section_title=section.title,
                    position=len(chunks),
                    text=piece,
                    hash=hashlib.sha256(embed.encode()).hexdigest(),
                )
            )
    if not chunks:
        raise KnowledgeFileError(f"{path.name}: no tiene texto que indexar.")
    return chunks


def _heading(line: str, markdown: bool) -> tuple[int, str | None, str] | None:
    """(level, number or None, title) when the line is a heading."""
    if markdown:
        match = _MD_HEADING.match(line)
        if not match:
            return None
        level, title = len(match.group(1)), _clean_title(match.group(2))
        numbered = _NUMBERED.match(title)
        if numbered:
            return level, numbered.group(1), numbered.group(2).strip()
        return level, None, title
    match = _TXT_HEADING.match(line.strip())
    if not match or match.group(2).rstrip().endswith((":", ".", ";", ",")):
        return None
    number = match.group(1)
    return number.count(".") + 1, number, match.group(2).strip()


def _clean_title(title: str) -> str:
    return re.sub(r"\s+", " ", title.replace("**", "").replace("__", "")).strip()


def _front_matter(text: str) -> tuple[dict[str, str], str]:
    """The fields of a leading `---` YAML block (a broken one is ignored: it is not course text either),
    and the text after it."""
    header, body = split_front_matter(text)
    try:
        fields = yaml.safe_load(header) if header is not None else None
    except yaml.YAMLError:
        fields = None
    return ({str(k): str(v) for k, v in fields.items() if v is not None} if isinstance(fields, dict) else {}), body


def _slug(text: str) -> str:
    ascii_text = fold(text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text).strip("-") or "seccion"


def _count(units: list[str]) -> int:
    return sum(len(u.split()) for u in units)


def _tail(units: list[str], overlap: int) -> list[str]:
    """The last units of a window that fit in `overlap` words: the start of the next window."""
    kept: list[str] = []
    for unit in reversed(units):
        if _count(kept) + len(unit.split()) > overlap:
            break
        kept.insert(0, unit)
    return kept
