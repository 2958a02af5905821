"""GGUF files checked before llama.cpp sees them: header, metadata, size, memory.

Reads the header, the metadata and the tensor table of a GGUF file (format v2/v3) in pure Python, and
turns every problem a user can cause into one ModelError naming the file and the fix: missing path,
not a GGUF, truncated, no architecture, larger than the free memory. It does not load the model or
read tensor data, and it does not decide whether llama.cpp supports the architecture (only loading
can tell; chat.py reports that case).
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tutor.errors import ModelFileInvalid, ModelFileMissing, ModelTooLarge

MAGIC = b"GGUF"
FIX = "Indique otro archivo con TUTOR_GGUF o --gguf, o quite esa opción para usar el modelo incluido."

# ggml type id -> (elements per block, bytes per block), checked against libggml's own
# ggml_blck_size/ggml_type_size for llama-cpp-python 0.3.36. An id missing here is not measured.
_GGML_BLOCKS = {
    0: (1, 4),
    1: (1, 2),
    2: (32, 18),
    3: (32, 20),
    6: (32, 22),
    7: (32, 24),
    8: (32, 34),
    9: (32, 36),
    10: (256, 84),
    11: (256, 110),
    12: (256, 144),
    13: (256, 176),
    14: (256, 210),
    15: (256, 292),
    16: (256, 66),
    17: (256, 74),
    18: (256, 98),
    19: (256, 50),
    20: (32, 18),
    21: (256, 110),
    22: (256, 82),
    23: (256, 136),
    24: (1, 1),
    25: (1, 2),
    26: (1, 4),
    27: (1, 8),
    28: (1, 8),
    29: (256, 56),
    30: (1, 2),
    34: (256, 54),
    35: (256, 66),
    39: (32, 17),
    40: (64, 36),
    41: (128, 18),
}
# GGUF metadata value types: fixed-size scalars as struct formats; 8 = string, 9 = array.
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


@dataclass(frozen=True)
class GGUFHeader:
    """What the file says about itself. Array values are kept as their length only (vocabularies are big)."""

    path: Path
    size: int  # bytes on disk
    version: int
    metadata: dict[str, Any]
    expected_size: int  # bytes the tensor table needs; smaller than `size` means nothing

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))

    @property
    def name(self) -> str:
        return str(self.metadata.get("general.name", self.path.stem))

    @property
    def has_chat_template(self) -> bool:
        return bool(self.metadata.get("tokenizer.chat_template"))

    @property
    def context_length(self) -> int | None:
        value = self.metadata.get(f"{self.architecture}.context_length")
        return int(value) if value is not None else None

    def kv_cache_bytes(self, n_ctx: int) -> int:
        """f16 K and V for every layer, the memory llama.cpp adds to the weights for n_ctx tokens."""
        arch, meta = self.architecture, self.metadata
        layers = int(meta.get(f"{arch}.block_count", 0))
        heads = int(meta.get(f"{arch}.attention.head_count", 1) or 1)
        kv_heads = int(meta.get(f"{arch}.attention.head_count_kv", heads) or heads)
        head_dim = int(meta.get(f"{arch}.embedding_length", 0)) // heads
        key = int(meta.get(f"{arch}.attention.key_length", head_dim))
        value = int(meta.get(f"{arch}.attention.value_length", head_dim))
        return layers * n_ctx * kv_heads * (key + value) * 2


def read_header(path: Path) -> GGUFHeader:
    """Parse the header of `path`; raise ModelFileMissing / ModelFileInvalid with the fix."""
    if not path.is_file():
        raise ModelFileMissing(f"No hay ningún archivo de modelo en «{path}». {FIX}")
    size = path.stat().st_size
    with path.open("rb") as handle:
        if handle.read(4) != MAGIC:
            raise ModelFileInvalid(f"«{path}» no es un archivo GGUF (no empieza por 'GGUF'). {FIX}")
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            try:
                return _Parser(data, path, size).header()
            except (struct.error, UnicodeDecodeError, ValueError) as exc:
                raise ModelFileInvalid(
                    f"«{path}» está truncado o dañado: su cabecera GGUF no se puede leer. "
                    f"Vuelva a copiarlo o descargarlo. {FIX}"
                ) from exc


def preflight(path: Path, *, n_ctx: int) -> GGUFHeader:
    """Everything that can be checked before loading: header, complete size, architecture, free memory."""
    header = read_header(path)
    if header.size < header.expected_size:
        raise ModelFileInvalid(
            f"«{path}» está truncado: mide {header.size:,} bytes y sus tensores necesitan "
            f"{header.expected_size:,}. Vuelva a copiarlo o descargarlo. {FIX}"
        )
    if not header.architecture:
        raise ModelFileInvalid(f"«{path}» no declara su arquitectura (general.architecture). {FIX}")
    needed = header.size + header.kv_cache_bytes(n_ctx)
    available = available_memory()
    if available is not None and needed > available:
        raise ModelTooLarge(
            f"«{path}» necesita unos {needed / 2**20:,.0f} MiB de memoria (pesos más contexto de {n_ctx} "
            f"tokens) y solo hay {available / 2**20:,.0f} MiB libres. Cierre otros programas, reduzca "
            f"TUTOR_N_CTX o use un modelo más pequeño (TUTOR_GGUF)."
        )
    return header


def available_memory() -> int | None:
    """MemAvailable from /proc/meminfo in bytes; None where there is no /proc (then no check)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class _Parser:
    """A cursor over the mapped file; every read fails with struct.error past the end."""

    def __init__(self, data: mmap.mmap, path: Path, size: int) -> None:
        self.data, self.path, self.size, self.pos = data, path, size, 4

    def header(self) -> GGUFHeader:
        version = self._scalar("I")
        if version not in (2, 3):
            raise ModelFileInvalid(f"«{self.path}» usa la versión {version} de GGUF, no admitida. {FIX}")
        n_tensors, n_kv = self._scalar("Q"), self._scalar("Q")
        if n_tensors > 1_000_000 or n_kv > 1_000_000:
            raise ValueError("impossible tensor or metadata count")
        metadata = {}
        for _ in range(n_kv):
            key = self._string()
            metadata[key] = self._value(self._scalar("I"))
        data_end = 0
        for _ in range(n_tensors):
            self._string()
            dims = [self._scalar("Q") for _ in range(self._scalar("I"))]
            ggml_type, offset = self._scalar("I"), self._scalar("Q")
            elements = 1
            for dim in dims:
                elements *= dim
            block, nbytes = _GGML_BLOCKS.get(ggml_type, (1, 0))  # unknown type: at least its start
            data_end = max(data_end, offset + elements // block * nbytes)
        alignment = int(metadata.get("general.alignment", 32)) or 32
        data_start = -(-self.pos // alignment) * alignment if n_tensors else self.pos
        return GGUFHeader(self.path, self.size, version, metadata, data_start + data_end)

    def _scalar(self, fmt: str) -> Any:
        (value,) = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def _string(self) -> str:
        length = self._scalar("Q")
        if self.pos + length > self.size:
            raise ValueError("string past the end of the file")
        text = self.data[self.pos : self.pos + length].decode("utf-8")
        self.pos += length
        return text

    def _value(self, kind: int) -> Any:
        if kind == 8:
            return self._string()
        if kind == 9:  # array: item type, count, items; kept as its length
            item_kind, count = self._scalar("I"), self._scalar("Q")
            if item_kind in _SCALARS:
                self.pos += count * struct.calcsize(_SCALARS[item_kind])  # skip without reading
            elif item_kind == 8:  # vocabularies: 262k strings for Gemma, skipped without decoding
                for _ in range(count):
                    length = self._scalar("Q")  # read first: it moves the cursor
                    self.pos += length
            else:
                for _ in range(count):
                    self._value(item_kind)
            if self.pos > self.size:
                raise ValueError("array past the end of the file")
            return count
        if kind in _SCALARS:
            return self._scalar(_SCALARS[kind])
        raise ValueError(f"unknown metadata type {kind}")
