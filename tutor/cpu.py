"""What the llama.cpp build and this CPU can do, and whether llama.cpp may repack the model's weights.

Input: llama.cpp's system info line (`llama_cpp.llama_print_system_info()`, the instruction sets the
build was compiled for) and the `flags` line of /proc/cpuinfo (what the CPU has). Output: a
`CpuReport` with the build's features, the ones this CPU lacks (a wheel built with -march=native on
another machine, reused from pip's cache), and the repacking decision with its reason:

    >>> build = "CPU : AVX2 = 1 | AVX512 = 1 | AMX_INT8 = 1 | REPACK = 1 |"
    >>> report = CpuReport.from_texts(build, "flags : fpu avx2 avx512f amx_tile amx_int8")
    >>> report.repack, report.missing
    (False, ())

Why: on CPUs with AMX (Sapphire Rapids and later Xeons) a native build repacks Q4_K weights into
llama.cpp's AMX buffer and the first decode segfaults in ggml_backend_amx_mul_mat (MODELS.md §1).
`use_extra_bufts=False` (no repacking) avoids it. It does not import llama_cpp (engine.py runs the
probe in the engine's own process, where an illegal instruction cannot take the app down).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Repack = Literal["auto", "on", "off"]
REBUILD = (
    'CMAKE_ARGS="-DGGML_NATIVE=OFF" .venv/bin/pip install --no-cache-dir --force-reinstall llama-cpp-python==0.3.36'
)
# llama.cpp's x86 feature names -> the /proc/cpuinfo flag that CPU must have to run them.
_X86_FLAGS = {
    "SSE3": "pni",  # /proc/cpuinfo calls SSE3 "pni" (Prescott New Instructions)
    "SSSE3": "ssse3",
    "AVX": "avx",
    "AVX_VNNI": "avx_vnni",
    "AVX2": "avx2",
    "F16C": "f16c",
    "FMA": "fma",
    "BMI2": "bmi2",
    "AVX512": "avx512f",
    "AVX512_VBMI": "avx512vbmi",
    "AVX512_VNNI": "avx512_vnni",
    "AVX512_BF16": "avx512_bf16",
    "AMX_INT8": "amx_int8",
}
AMX_FLAGS = ("amx_tile", "amx_int8", "amx_bf16")


def build_features(system_info: str) -> tuple[str, ...]:
    """The features llama.cpp reports as on: `"AVX2 = 1 | AVX512 = 0"` -> ("AVX2",)."""
    return tuple(name for name, value in re.findall(r"([A-Z][A-Z0-9_]*) = (\d+)", system_info) if value != "0")


def cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The first `flags` line of /proc/cpuinfo (x86); empty elsewhere (ARM says `Features`)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def cpu_name(cpuinfo: str) -> str:
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            return value.strip()
    return ""


@dataclass(frozen=True)
class CpuReport:
    """The build's features, the CPU's flags, and what follows for llama.cpp."""

    features: tuple[str, ...]  # what llama.cpp was compiled for
    flags: frozenset[str]  # what the CPU has (empty where /proc/cpuinfo says nothing)
    name: str = ""  # the CPU's model name
    setting: Repack = "auto"  # TUTOR_WEIGHT_REPACK

    @classmethod
    def from_texts(cls, system_info: str, cpuinfo: str, setting: Repack = "auto") -> CpuReport:
        return cls(build_features(system_info), cpu_flags(cpuinfo), cpu_name(cpuinfo), setting)

    @property
    def amx(self) -> bool:
        """AMX in the build (AMX_INT8 = 1) or on the CPU (amx_* flags)."""
        return "AMX_INT8" in self.features or any(flag in self.flags for flag in AMX_FLAGS)

    @property
    def missing(self) -> tuple[str, ...]:
        """Instruction sets the build uses that this CPU lacks: it would die of SIGILL."""
        if not self.flags:  # not x86 Linux: nothing to compare with
            return ()
        return tuple(f for f in self.features if f in _X86_FLAGS and _X86_FLAGS[f] not in self.flags)

    @property
    def repack(self) -> bool:
        """May llama.cpp repack the weights (model parameter use_extra_bufts)?"""
        if self.setting != "auto":
            return self.setting == "on"
        return not self.amx

    @property
    def repack_reason(self) -> str:
        """Why repacking is on or off, in the CLI's language."""
        if self.setting != "auto":
            return f"TUTOR_WEIGHT_REPACK={self.setting}"
        if not self.amx:
            return "sin AMX: llama.cpp reordena los pesos para las instrucciones de esta CPU"
        where = []
        if "AMX_INT8" in self.features:
            where.append("la compilación (AMX_INT8 = 1)")
        if self.flags & set(AMX_FLAGS):
            where.append("la CPU (amx_* en /proc/cpuinfo)")
        return (
            f"AMX en {' y '.join(where)}: el reempaquetado AMX de llama.cpp falla "
            "(segfault en ggml_backend_amx_mul_mat), así que los pesos se usan tal cual"
        )

    def mismatch_message(self) -> str:
        """The fix for a build made for another CPU (empty when the build suits this one)."""
        if not self.missing:
            return ""
        return (
            f"llama-cpp-python se compiló para otra CPU: usa {', '.join(self.missing)}, que esta CPU "
            f"({self.name or 'sin nombre'}) no tiene, y el motor moriría con «instrucción ilegal» "
            f"(pip reutilizó una rueda compilada en otra máquina). Recompílelo para esta: {REBUILD}"
        )


def read_cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def probe(setting: Repack = "auto") -> CpuReport:
    """This process's llama.cpp build and CPU. Imports llama_cpp: run it where a crash is contained."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info()
    text = info.decode("utf-8", "replace") if isinstance(info, bytes) else str(info)
    return CpuReport.from_texts(text, read_cpuinfo(), setting)
