"""The installer on part packages this test builds itself: real pip (`--no-index --find-links` a local
folder), real wheels made with zipfile, no network. In order, out of order, a corrupted part, a
missing part, an interrupted download that resumes, a zip model folder, and removal."""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from tutor.catalogue import CatalogueModel, Part
from tutor.installer import InstallError, install, pip_download, remove

PACKAGE = "tutor-test-part"


def make_wheel(folder: Path, version: str, payload: bytes, *, name: str = PACKAGE) -> Path:
    """A minimal valid wheel holding `payload` as <module>/chunk.bin (its __init__ would raise if run)."""
    module = name.replace("-", "_")
    dist = f"{module}-{version}.dist-info"
    files = {
        f"{module}/__init__.py": b"raise RuntimeError('a part package must never be imported')\n",
        f"{module}/chunk.bin": payload,
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{path},,\n" for path in files) + f"{dist}/RECORD,,\n"
    path = folder / f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as wheel:
        for member, data in files.items():
            wheel.writestr(member, data)
        wheel.writestr(f"{dist}/RECORD", record)
    return path


def entry_for(payloads: list[bytes], versions: list[str], **extra: object) -> CatalogueModel:
    joined = b"".join(payloads)
    parts = tuple(
        Part(PACKAGE, v, f"{PACKAGE.replace('-', '_')}/chunk.bin", len(p), hashlib.sha256(p).hexdigest())
        for v, p in zip(versions, payloads)
    )
    fields: dict[str, object] = dict(
        name="test-model", kind="generator", title="test", source="parts", file="test-model.gguf",
        size_bytes=len(joined), sha256=hashlib.sha256(joined).hexdigest(), license="MIT",
        license_url="https://example.invalid/license", prompt_style="chat", parts=parts,
    )  # fmt: skip
    fields.update(extra)
    return CatalogueModel(**fields)  # type: ignore[arg-type]


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    folder = tmp_path / "registry"
    folder.mkdir()
    return folder


def local_pip(registry: Path) -> tuple[str, ...]:
    return ("--no-index", "--find-links", str(registry))


# versions that sort wrongly as strings: the catalogue's order must win
VERSIONS = ["0.2.1", "0.2.10", "0.2.2"]


def payloads(n: int = 3) -> list[bytes]:
    return [bytes([i]) * (3000 + 17 * i) + f"part {i}".encode() for i in range(n)]


def test_parts_are_joined_in_catalogue_order_and_checked(tmp_path: Path, registry: Path) -> None:
    data = payloads()
    for version, payload in reversed(list(zip(VERSIONS, data))):  # built out of order on purpose
        make_wheel(registry, version, payload)
    entry = entry_for(data, VERSIONS)
    path = install(entry, tmp_path / "data", pip_args=local_pip(registry), progress=False)
    assert path == tmp_path / "data" / "models" / "test-model.gguf"
    assert path.read_bytes() == b"".join(data)
    assert entry.installed(tmp_path / "data")
    assert not (tmp_path / "data" / "models" / ".staging" / "test-model").exists()


def test_a_catalogue_listing_parts_out_of_order_gives_the_wrong_hash(tmp_path: Path, registry: Path) -> None:
    data = payloads()
    for version, payload in zip(VERSIONS, data):
        make_wheel(registry, version, payload)
    entry = entry_for(data, VERSIONS)
    swapped = replace(entry, parts=(entry.parts[1], entry.parts[0], *entry.parts[2:]))
    with pytest.raises(InstallError, match="SHA-256") as failed:
        install(swapped, tmp_path / "data", pip_args=local_pip(registry), progress=False)
    assert "TUTOR_MODEL" in str(failed.value)  # how to copy the file from another machine instead
    assert not (tmp_path / "data" / "models" / "test-model.gguf").exists()


def test_a_corrupted_part_is_named_and_nothing_is_installed(tmp_path: Path, registry: Path) -> None:
    data = payloads()
    for i, (version, payload) in enumerate(zip(VERSIONS, data)):
        make_wheel(registry, version, payload if i != 2 else payload[:-1] + b"X")
    entry = entry_for(data, VERSIONS)
    with pytest.raises(InstallError, match=r"parte 3 de 3") as failed:
        install(entry, tmp_path / "data", pip_args=local_pip(registry), progress=False)
    assert "0.2.2" in str(failed.value) and "SHA-256" in str(failed.value)
    assert not (tmp_path / "data" / "models" / "test-model.gguf").exists()


def test_a_missing_part_says_so(tmp_path: Path, registry: Path) -> None:
    data = payloads()
    for version, payload in list(zip(VERSIONS, data))[:2]:
        make_wheel(registry, version, payload)
    entry = entry_for(data, VERSIONS)
    with pytest.raises(InstallError, match=r"no tiene la parte 3 de 3") as failed:
        install(entry, tmp_path / "data", pip_args=local_pip(registry), progress=False)
    assert "Location" not in str(failed.value) and "Traceback" not in str(failed.value)


def test_no_network_says_what_to_do(tmp_path: Path) -> None:
    """An index on a closed loopback port: pip's connection errors become the no-network message."""
    entry = entry_for(payloads(1), VERSIONS[:1])
    args = ("--index-url", "http://127.0.0.1:9/simple", "--retries", "1", "--timeout", "2")
    with pytest.raises(InstallError, match="No se pudo conectar") as failed:
        install(entry, tmp_path / "data", pip_args=args, progress=False)
    assert "se conserva" in str(failed.value) and "TUTOR_MODEL" in str(failed.value)


def test_an_interrupted_install_resumes_without_fetching_again(tmp_path: Path, registry: Path) -> None:
    data = payloads()
    for version, payload in zip(VERSIONS, data):
        make_wheel(registry, version, payload)
    entry = entry_for(data, VERSIONS)
    fetched: list[str] = []

    def interrupted(part: Part, folder: Path) -> None:
        if len(fetched) == 2:
            raise KeyboardInterrupt  # the student pressed Ctrl-C during the third part
        fetched.append(part.version)
        pip_download(part, folder, pip_args=local_pip(registry))

    with pytest.raises(KeyboardInterrupt):
        install(entry, tmp_path / "data", download=interrupted, progress=False)
    assert not (tmp_path / "data" / "models" / "test-model.gguf").exists()
    # a half-written wheel of the third part, as a killed download leaves it
    third = next((tmp_path / "data" / "models" / ".staging" / "test-model").glob("03-*"))
    (third / f"{PACKAGE.replace('-', '_')}-0.2.2-py3-none-any.whl").write_bytes(b"PK\x03\x04 half")

    def counting(part: Part, folder: Path) -> None:
        fetched.append(part.version)
        pip_download(part, folder, pip_args=local_pip(registry))

    install(entry, tmp_path / "data", download=counting, progress=False)
    assert fetched == ["0.2.1", "0.2.10", "0.2.2"]  # each part fetched exactly once
    assert (tmp_path / "data" / "models" / "test-model.gguf").read_bytes() == b"".join(data)


def test_a_zip_model_folder_is_unpacked_checked_and_removed(tmp_path: Path, registry: Path) -> None:
    weights = b"weights" * 500
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("model_download/model.safetensors", weights)
        archive.writestr("model_download/modules.json", "[]")
    blob = buffer.getvalue()
    data = [blob[: len(blob) // 2], blob[len(blob) // 2 :]]
    for version, payload in zip(VERSIONS, data):
        make_wheel(registry, version, payload)
    entry = entry_for(data, VERSIONS[:2], kind="embedder", file="test-embedder", unpack="zip",
                      zip_root="model_download", check_member="model.safetensors", check_size=len(weights),
                      check_sha256=hashlib.sha256(weights).hexdigest())  # fmt: skip
    folder = install(entry, tmp_path / "data", pip_args=local_pip(registry), progress=False)
    assert sorted(p.name for p in folder.iterdir()) == ["model.safetensors", "modules.json"]
    assert entry.installed(tmp_path / "data")
    assert remove(entry, tmp_path / "data") and not folder.exists() and not entry.installed(tmp_path / "data")
    wrong = replace(entry, check_sha256="0" * 64)
    with pytest.raises(InstallError, match="model.safetensors"):
        install(wrong, tmp_path / "data", pip_args=local_pip(registry), progress=False)
    assert not folder.exists()


def test_not_enough_disk_is_refused_before_any_download(tmp_path: Path) -> None:
    data = payloads(1)
    entry = replace(entry_for(data, VERSIONS[:1]), size_bytes=10**16)  # 10 PB: more than any test disk

    def never(part: Part, folder: Path) -> None:
        raise AssertionError("nothing may be downloaded when it cannot fit")

    with pytest.raises(InstallError, match="No hay espacio") as failed:
        install(entry, tmp_path / "data", download=never, progress=False)
    assert "TUTOR_DATA_DIR" in str(failed.value) and "TUTOR_MODEL" in str(failed.value)
