"""The repacking guard and the build check (tutor/cpu.py), fed recorded system-info and cpuinfo texts.

The AMX crash itself needs an AMX CPU; what these tests pin is the decision that avoids it, on any
machine. THIS_MACHINE is what llama-cpp-python 0.3.36 (native build) printed on the team's AMD EPYC;
SAPPHIRE_RAPIDS is the same line with `AMX_INT8 = 1`, as ggml-cpu prints it (after AVX512_BF16) for a
native build on an AMX Xeon (issue 14).
"""

from __future__ import annotations

import pytest

from tutor.cpu import REBUILD, CpuReport, build_features, cpu_flags

THIS_MACHINE = (
    "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX_VNNI = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | AVX512 = 1 | "
    "AVX512_VBMI = 1 | AVX512_VNNI = 1 | AVX512_BF16 = 1 | LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 | "
)
SAPPHIRE_RAPIDS = THIS_MACHINE.replace("AVX512_BF16 = 1 | ", "AVX512_BF16 = 1 | AMX_INT8 = 1 | ")
EPYC_FLAGS = (
    "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse3 pni ssse3 fma avx f16c "
    "avx2 bmi2 avx512f avx512dq avx512vbmi avx512_vnni avx512_bf16 avx_vnni\n"
)
XEON_FLAGS = EPYC_FLAGS.replace("AMD EPYC", "Intel(R) Xeon(R) Platinum 8480+").replace(
    "avx_vnni", "avx_vnni amx_bf16 amx_tile amx_int8"
)
AVX2_LAPTOP = "model name\t: Intel(R) Core(TM) i5-8250U\nflags\t\t: fpu pni ssse3 fma avx f16c avx2 bmi2\n"


def test_the_system_info_line_is_read_as_the_features_that_are_on() -> None:
    assert build_features("CPU : AVX2 = 1 | AVX512 = 0 | AMX_INT8 = 1 | ") == ("AVX2", "AMX_INT8")
    assert "AMX_INT8" not in build_features(THIS_MACHINE) and "AVX512" in build_features(THIS_MACHINE)
    assert "amx_int8" in cpu_flags(XEON_FLAGS) and cpu_flags("Features\t: fp asimd") == frozenset()


@pytest.mark.parametrize(
    ("system_info", "cpuinfo", "repack", "says"),
    [
        (SAPPHIRE_RAPIDS, XEON_FLAGS, False, "AMX_INT8 = 1"),  # a native build on an AMX Xeon: the crash
        (SAPPHIRE_RAPIDS, "", False, "AMX_INT8 = 1"),  # the build alone says AMX (no /proc/cpuinfo)
        (THIS_MACHINE, XEON_FLAGS, False, "amx_"),  # a wheel from elsewhere on an AMX CPU
        (THIS_MACHINE, EPYC_FLAGS, True, "sin AMX"),  # this machine: repacking stays on
        (THIS_MACHINE, "", True, "sin AMX"),
    ],
)
def test_repacking_is_off_when_the_build_or_the_cpu_has_amx(system_info, cpuinfo, repack, says) -> None:
    report = CpuReport.from_texts(system_info, cpuinfo)
    assert report.repack is repack and says in report.repack_reason
    assert report.amx is not repack


@pytest.mark.parametrize("setting", ["on", "off"])
def test_the_setting_overrides_the_guard(setting: str) -> None:
    for system_info, flags in ((SAPPHIRE_RAPIDS, XEON_FLAGS), (THIS_MACHINE, EPYC_FLAGS)):
        report = CpuReport.from_texts(system_info, flags, setting)  # type: ignore[arg-type]
        assert report.repack is (setting == "on") and report.repack_reason == f"TUTOR_WEIGHT_REPACK={setting}"


def test_a_wheel_built_for_another_cpu_is_named_with_the_rebuild_command() -> None:
    """pip's wheel cache ignores CMAKE_ARGS: an -march=native wheel from an AVX-512 machine, reused on
    an AVX2 laptop, would die of SIGILL at the first matrix product."""
    report = CpuReport.from_texts(THIS_MACHINE, AVX2_LAPTOP)
    assert report.missing == ("AVX_VNNI", "AVX512", "AVX512_VBMI", "AVX512_VNNI", "AVX512_BF16")
    message = report.mismatch_message()
    assert "i5-8250U" in message and "AVX512" in message and REBUILD in message
    assert "--no-cache-dir --force-reinstall" in REBUILD and "-DGGML_NATIVE=OFF" in REBUILD
    assert CpuReport.from_texts(THIS_MACHINE, EPYC_FLAGS).mismatch_message() == ""
    assert CpuReport.from_texts(THIS_MACHINE, "").missing == (), "no flags to compare (not x86): no verdict"


def test_this_machines_engine_reports_its_own_build() -> None:
    """The probe runs in an engine process; here (no AMX) it leaves repacking on, and says why."""
    from tutor.engine import probe_in_child

    report = probe_in_child()
    assert "AVX2" in report.features and report.missing == ()
    assert report.repack is not report.amx and report.repack_reason
