"""Convert the PDF-extracted course text into a clean Markdown knowledge file.

Usage: python tools/clean_course.py SRC OUT

What it does:
- writes YAML front matter (title, author, source, licence) and a one-line attribution note;
- drops everything before the body's "Introducción" (cover, licence block, broken table of contents);
- drops the running page headers/footers, including one glued to the end of a sentence;
- turns the numbered chapter/section/subsection titles into `#`/`##`/`###` headings, joining the
  titles that the PDF split over two lines;
- re-joins paragraphs that a page break cut in two;
- removes stray `**` markers and normalises bullet glyphs to Markdown bullets.

What it does not do: it never rewrites, reorders or corrects the course wording (typos such as
"va que" stay as they are), and it does not try to be a general PDF-to-Markdown converter: the
rules below are tuned to this one course text. Pure stdlib.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

COURSE_TITLE = "Grandes Modelos de Lenguaje (LLMs): Modelos Generativos y Discriminativos"
FRONT_MATTER = f"""---
title: "{COURSE_TITLE}"
author: "José Arcos Aneas"
source: "EOI Escuela de Organización Industrial"
license: "CC BY-NC-SA 4.0"
license_url: "https://creativecommons.org/licenses/by-nc-sa/4.0/"
language: es
---

> Material de José Arcos Aneas (EOI) bajo licencia CC BY-NC-SA 4.0, convertido a Markdown desde el \
PDF original: se han quitado la portada, el índice y las cabeceras de página; el texto no se ha modificado.
"""

# Running page headers/footers. The course title is one of them: inside the body it only ever
# appears as a page header, never as content.
NOISE = (
    "EOI Escuela de Organización Industrial",
    "http://www.eoi.es",
    "Big Data y Análisis de Datos en el ámbito tributario",
    COURSE_TITLE,
)

HEADING_RE = re.compile(r"^(\d+(?:\.\d+){0,2})\.\s+(\S.*)$")
# A table-of-contents entry: "2.3.<TAB>Title…<TAB>12"; chapter 7 is printed "7•" there.
TOC_RE = re.compile(r"^(\d+(?:\.\d+)*)[.•]\s+(.*)$")
# Bullet glyphs as the extractor left them. "- o " is a Word sub-bullet glyph flattened into a
# top-level list; "> " is a bullet glyph (an arrow) the extractor turned into '>' after a page
# break; a lone capital "O " before a capitalised word is the same "o" glyph (no sentence here
# starts with the Spanish word "O").
SUB_BULLET_RE = re.compile(r"^\s+-\s+(.*)$")
BULLET_RE = re.compile(r"^(?:-\s+o\s+|-\s+|•\s*|>\s+|O\s+(?=[A-Z]))(.*)$")
SENTENCE_END = ".:!?"


@dataclass
class Item:
    """One output line: a paragraph (level 0), bullet (1) or sub-bullet (2), or a heading."""

    text: str
    level: int = 0
    heading: str = ""  # "#", "##" or "###" for headings
    starts_block: bool = True  # False for the 2nd+ line of one source block (keeps lists tight)

    def render(self) -> str:
        if self.heading:
            return f"{self.heading} {self.text}"
        return ("", "- ", "  - ")[self.level] + self.text


def clean_line(line: str) -> str:
    """Remove `**`, page furniture and trailing whitespace from one source line."""
    line = line.replace("**", "").rstrip()
    if line.strip() in NOISE:
        return ""
    # A footer can be glued to the last words of a page ("…para mejorar su EOI Escuela … eoi.es"):
    # peel any trailing header/footer strings off the end of the line.
    stripped = True
    while stripped:
        stripped = False
        for noise in NOISE:
            if line.endswith(noise):
                line, stripped = line[: -len(noise)].rstrip(), True
    return line


def parse_toc(lines: list[str]) -> dict[str, list[str]]:
    """Map each table-of-contents id to the words of its (noisy) title."""
    toc: dict[str, list[str]] = {}
    for line in lines:
        match = TOC_RE.match(line)
        if match:
            toc[match.group(1)] = match.group(2).split()
    return toc


def split_blocks(lines: list[str]) -> list[tuple[list[str], bool]]:
    """Group consecutive non-blank lines into blocks, noting which ones follow a page break.

    Paragraphs are separated by one blank line; a page break leaves two or more (the removed
    header/footer lines count as blank), which is how a page break is recognised.
    """
    blocks: list[tuple[list[str], bool]] = []
    current: list[str] = []
    blanks, page_break = 0, False
    for line in lines:
        if line.strip():
            if not current:
                page_break = blanks >= 2
            current.append(line)
            blanks = 0
        else:
            if current:
                blocks.append((current, page_break))
                current = []
            blanks += 1
    if current:
        blocks.append((current, page_break))
    return blocks


def block_items(block: list[str], previous: Item | None) -> list[Item]:
    """Turn one block of source lines into bullets/paragraphs; wrapped lines join their item."""
    items: list[Item] = []
    for line in block:
        sub, bullet = SUB_BULLET_RE.match(line), BULLET_RE.match(line)
        if sub:
            items.append(Item(sub.group(1).strip(), level=2))
        elif bullet:
            level = 1
            # A '>' bullet continues the list cut by the page break, at the level it was at.
            if line.startswith(">") and previous is not None and previous.level == 2:
                level = 2
            items.append(Item(bullet.group(1).strip(), level=level))
        elif items:
            # A hard-wrapped continuation line (often indented): part of the item above.
            items[-1].text += " " + line.strip()
        else:
            items.append(Item(line.strip()))
    for n, item in enumerate(items):
        item.text = " ".join(item.text.split())
        item.starts_block = n == 0
    return items


class HeadingTracker:
    """Recognise numbered headings only when they are the next expected number.

    Ordered-list items such as "1. Preentrenamiento:" or "4. Métricas de Especificidad:" look like
    chapter headings; they are rejected because they end with ':' and, mostly, because their
    number is not the next chapter/section/subsection in sequence.
    """

    def __init__(self) -> None:
        self.numbers: list[int] = [0]  # current chapter, section, subsection (as deep as known)

    def match(self, line: str) -> tuple[str, str] | None:
        found = HEADING_RE.match(line)
        if not found or found.group(2).rstrip().endswith(":"):
            return None
        parts = [int(p) for p in found.group(1).split(".")]
        depth = len(parts)
        parent, own = parts[:-1], parts[-1]
        if parent != self.numbers[: depth - 1]:
            return None
        current = self.numbers[depth - 1] if len(self.numbers) >= depth else 0
        if own != current + 1:
            return None
        self.numbers = parts
        return found.group(1), " ".join(found.group(2).split())


def convert(text: str) -> str:
    """Return the Markdown knowledge file for the course text `text`."""
    lines = text.splitlines()
    # The body starts at the first line that is exactly "Introducción" (the TOC line is broken).
    start = next(i for i, line in enumerate(lines) if line.strip() == "Introducción")
    toc = parse_toc(lines[:start])
    blocks = split_blocks([clean_line(line) for line in lines[start + 1 :]])

    items: list[Item] = [Item("Introducción", heading="#")]
    tracker = HeadingTracker()
    i = 0
    while i < len(blocks):
        block, page_break = blocks[i]
        i += 1
        heading = tracker.match(block[0]) if len(block) == 1 else None
        if heading:
            number, title = heading
            # The PDF wrapped some long titles ("…Procesamiento del" / "Lenguaje Natural (NLP)").
            # The TOC, broken as it is, still has the full title: if it continues exactly where the
            # body title stops, with the first word of the next one-line block, that block is the
            # rest of the title.
            words, toc_words = title.split(), toc.get(number, [])
            if (
                i < len(blocks)
                and len(blocks[i][0]) == 1
                and toc_words[: len(words)] == words
                and toc_words[len(words) : len(words) + 1] == blocks[i][0][0].split()[:1]
            ):
                title += " " + blocks[i][0][0].strip()
                i += 1
            items.append(Item(f"{number}. {title}", heading="#" * number.count(".") + "#"))
            continue

        new = block_items(block, items[-1])
        last = items[-1]
        if page_break and not last.heading:
            # A page break cut a paragraph in two: the first half has no sentence-final punctuation
            # and the second half starts lowercase. Join the halves; if the extractor put the
            # bullet glyph on the second half, the joined item is that bullet.
            if last.text[-1] not in SENTENCE_END and new[0].text[:1].islower():
                last.text += " " + new[0].text
                last.level = max(last.level, new[0].level)
                new = new[1:]
            # A list cut by a page break stays one (tight) list.
            elif last.level and new[0].level:
                new[0].starts_block = False
        items.extend(new)

    # One blank line between source blocks; the lines of one block (a list) stay together.
    body = "".join(("\n\n" if item.starts_block else "\n") + item.render() for item in items)
    return FRONT_MATTER.rstrip("\n") + body + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.splitlines()[2], file=sys.stderr)
        return 2
    source, output = Path(argv[1]), Path(argv[2])
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(convert(source.read_text(encoding="utf-8")), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
