"""Checks of the course knowledge file against the PDF-extracted course text it is built from.

The expected headings are derived from the source independently of tools/clean_course.py, so the
two implementations check each other. Stdlib + pytest only.
"""

from __future__ import annotations

import re
import subprocess
import sys
from difflib import SequenceMatcher
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "tests" / "data" / "course_source.txt"
KNOWLEDGE = ROOT / "knowledge" / "llms-generativos-discriminativos.md"
CONVERTER = ROOT / "tools" / "clean_course.py"

COURSE_TITLE = "Grandes Modelos de Lenguaje (LLMs): Modelos Generativos y Discriminativos"
NOISE = (
    "EOI Escuela de Organización Industrial",
    "http://www.eoi.es",
    "Big Data y Análisis de Datos en el ámbito tributario",
    COURSE_TITLE,
)

# The course's stable ids: sections per chapter and subsections per section.
SECTIONS = {1: 5, 2: 5, 3: 5, 4: 5, 5: 6, 6: 3, 7: 3}
SUBSECTIONS = {
    "3.3": 3, "3.4": 4, "3.5": 2, "4.1": 2, "4.2": 4, "4.3": 3, "4.4": 2, "4.5": 2,
    "5.1": 2, "5.2": 2, "5.3": 2, "5.4": 1, "5.5": 2, "5.6": 2, "6.1": 3, "6.3": 2,
}  # fmt: skip


def _expected_ids() -> list[str]:
    ids: list[str] = []
    for chapter, n_sections in SECTIONS.items():
        ids.append(str(chapter))
        for s in range(1, n_sections + 1):
            section = f"{chapter}.{s}"
            ids.append(section)
            ids.extend(f"{section}.{k}" for k in range(1, SUBSECTIONS.get(section, 0) + 1))
    return ids


EXPECTED_IDS = _expected_ids()

# Section titles the PDF wrapped onto a second line (read off the source by eye).
SPLIT_TITLES = {
    "2.3": "Relevancia de los LLMs en el Procesamiento del Lenguaje Natural (NLP)",
    "3.2": "Diferencias en los Enfoques: Generación vs. Clasificación",
    "3.5": "Entrenamiento y Ajuste Fino de Modelos Discriminativos",
    "5.3": "Optimización de Resultados mediante Prompt Engineering",
}

NUMBERED_LINE_RE = re.compile(r"^(\d+(?:\.\d+)*)\.\s+(.*\S)\s*$")
MD_HEADING_RE = re.compile(r"^(#+) (.*)$")
MD_NUMBERED_HEADING_RE = re.compile(r"^(#+) (\d+(?:\.\d+)*)\. (.+)$")
# Bullet glyphs as the extractor left them ("O " is a flattened "o" bullet glyph).
SOURCE_MARKER_RE = re.compile(r"^(?:-\s+o\s+|-\s+|•\s*|>\s+|O\s+(?=[A-Z]))")
MD_MARKER_RE = re.compile(r"^(?:#+\s+|-\s+)")


def source_body() -> list[str]:
    """Source lines from the body's "Introducción" (the broken TOC line does not match)."""
    lines = SOURCE.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "Introducción")
    return lines[start:]


def clean(text: str) -> str:
    return " ".join(text.replace("**", "").split())


def strip_noise(line: str) -> str:
    """Drop header/footer text from a source line (including a footer glued to a sentence)."""
    line = line.rstrip()
    changed = True
    while changed:
        changed = False
        for noise in NOISE:
            if line.endswith(noise):
                line, changed = line[: -len(noise)].rstrip(), True
    return line


def source_headings() -> list[tuple[str, str]]:
    """(id, title) of every numbered heading in the source body, split titles joined."""
    body = source_body()
    headings = []
    for i, line in enumerate(body):
        match = NUMBERED_LINE_RE.match(line.replace("**", ""))
        # Numbered list items ("1. Preentrenamiento:") end with ':'; headings never do.
        if not match or match.group(2).endswith(":"):
            continue
        number, title = match.group(1), clean(match.group(2))
        if number in SPLIT_TITLES:
            following = next(x for x in body[i + 1 :] if x.strip())
            title = clean(title + " " + following)
        headings.append((number, title))
    return headings


def knowledge_text() -> str:
    return KNOWLEDGE.read_text(encoding="utf-8")


def split_front_matter(text: str) -> tuple[dict[str, str], list[str]]:
    lines = text.splitlines()
    assert lines[0] == "---", "the file must start with YAML front matter"
    end = lines.index("---", 1)
    meta = {}
    for line in lines[1:end]:
        key, _, value = line.partition(":")
        meta[key.strip()] = value.strip().strip('"')
    return meta, lines[end + 1 :]


def body_lines() -> list[str]:
    return split_front_matter(knowledge_text())[1]


def md_headings() -> list[str]:
    return [line for line in body_lines() if MD_HEADING_RE.match(line)]


def test_front_matter() -> None:
    meta, body = split_front_matter(knowledge_text())
    assert meta["title"] == COURSE_TITLE
    assert meta["author"] == "José Arcos Aneas"
    assert meta["source"] == "EOI Escuela de Organización Industrial"
    assert "CC BY-NC-SA 4.0" in meta["license"]
    assert meta["license_url"] == "https://creativecommons.org/licenses/by-nc-sa/4.0/"
    assert meta["language"] == "es"
    note = [line for line in body if line.startswith("> ")]
    assert len(note) == 1 and "CC BY-NC-SA 4.0" in note[0] and "José Arcos Aneas" in note[0]


def test_expected_ids_match_the_source() -> None:
    # 7 chapters + 32 sections + 38 subsections. (70 is the count without the chapters.)
    assert len(EXPECTED_IDS) == 77
    assert sum(1 for i in EXPECTED_IDS if i.count(".") == 0) == 7
    assert sum(1 for i in EXPECTED_IDS if i.count(".") == 1) == 32
    assert sum(1 for i in EXPECTED_IDS if i.count(".") == 2) == 38
    assert [number for number, _ in source_headings()] == EXPECTED_IDS


def test_heading_ids_and_levels() -> None:
    headings = md_headings()
    assert headings[0] == "# Introducción"
    numbered = [MD_NUMBERED_HEADING_RE.match(h) for h in headings[1:]]
    assert all(numbered), [h for h, m in zip(headings[1:], numbered) if not m]
    ids = [m.group(2) for m in numbered if m]
    assert ids == EXPECTED_IDS
    for m in numbered:
        assert m is not None
        assert len(m.group(1)) == m.group(2).count(".") + 1, m.group(0)


def test_heading_titles_match_the_source() -> None:
    got = [(m.group(2), m.group(3)) for m in map(MD_NUMBERED_HEADING_RE.match, md_headings()) if m is not None]
    assert got == source_headings()
    for number, title in got:
        assert title and "**" not in title and "\t" not in title, number
        assert not re.search(r"\s\d+$", title), f"page number left on {number}: {title}"
        assert not title.endswith(":"), number
    titles = dict(got)
    for number, title in SPLIT_TITLES.items():
        assert titles[number] == title
    assert titles["4.2.1"] == "GPT (Generative Pre-trained Transformer)"
    assert titles["7"] == "Aplicaciones Avanzadas y Futuro de los LLMs"


def test_no_pdf_noise() -> None:
    text = knowledge_text()
    body = "\n".join(body_lines())
    for noise in NOISE:
        assert noise not in body, noise
    assert "**" not in text
    assert "•" not in text
    assert "\t" not in text
    assert "\n\n\n" not in text, "runs of blank lines must collapse"
    for line in text.splitlines():
        assert not re.fullmatch(r"\s*\d+\s*", line), f"bare page number: {line!r}"
        assert line == line.rstrip(), f"trailing whitespace: {line!r}"
        assert not (line.strip() == "" and line), "whitespace-only line"
    # Cover, licence block and table of contents are gone.
    for marker in ("Índice", "PROFESOR/A", "Esta publicación está bajo licencia", "Intro oducción"):
        assert marker not in body, marker
    quotes = [line for line in body_lines() if line.startswith(">")]
    assert len(quotes) == 1, f"only the attribution note may be a block quote: {quotes}"


def test_numbered_list_items_stay_list_items() -> None:
    lines = body_lines()
    for item in ("1. Preentrenamiento:", "4. Métricas de Especificidad:", "4. Aplicaciones Prácticas:"):
        assert item in lines, item
    for line in lines:
        assert not re.match(r"^#+ \d+\. .*:$", line), line


def source_line_words(line: str) -> list[str]:
    line = strip_noise(line.replace("**", ""))
    if line.strip() in NOISE:
        return []
    return SOURCE_MARKER_RE.sub("", line.strip()).split()


def md_words() -> list[str]:
    words: list[str] = []
    for line in body_lines():
        if line.startswith("> "):  # the attribution note is not course text
            continue
        words.extend(MD_MARKER_RE.sub("", line.strip()).split())
    return words


def word_diff() -> tuple[list[str], list[str]]:
    """Align source and Markdown word sequences: (source lines losing words, invented words)."""
    body = source_body()
    source, owner = [], []  # owner[k]: index in `body` of the line source word k comes from
    for index, line in enumerate(body):
        words = source_line_words(line)
        source.extend(words)
        owner.extend([index] * len(words))
    markdown = md_words()
    lost: set[int] = set()
    invented: list[str] = []
    matcher = SequenceMatcher(None, source, markdown, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag in ("delete", "replace"):
            lost.update(owner[i1:i2])
        if tag in ("insert", "replace"):
            invented.append(" ".join(markdown[j1:j2]))
    offset = len(SOURCE.read_text(encoding="utf-8").splitlines()) - len(body)
    missing = [f"source line {offset + i + 1}: {body[i].strip()[:100]}" for i in sorted(lost)]
    return missing, invented


def test_every_source_line_is_present_in_order() -> None:
    # Each source body line (noise removed, markup/bullets stripped) must appear word for word,
    # in order, in the Markdown; headings are included, so split titles are checked too.
    missing, _ = word_diff()
    assert not missing, "source lines missing from the knowledge file:\n" + "\n".join(missing)


def test_nothing_invented() -> None:
    # Word for word, the Markdown body is the source body minus noise and markup.
    _, invented = word_diff()
    assert not invented, f"words not in the source: {invented}"


def test_converter_is_reproducible(tmp_path: Path) -> None:
    out = tmp_path / "out.md"
    subprocess.run([sys.executable, str(CONVERTER), str(SOURCE), str(out)], check=True)
    assert out.read_bytes() == KNOWLEDGE.read_bytes()
