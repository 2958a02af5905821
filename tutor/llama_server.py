"""`python -m tutor.llama_server ARGS…`: llama-cpp-python's OpenAI-compatible server, safe on AMX CPUs.

`python -m llama_cpp.server` lets llama.cpp repack the weights (its default) and has no switch for
it; on CPUs with AMX that repacking crashes the server during its first answer (MODELS.md §1). This
asks the engine's probe (a short-lived child, so a wrong-CPU build dies there) whether repacking is
safe, as the tutor's own engine does (TUTOR_WEIGHT_REPACK: auto, on, off), then runs
llama_cpp.server with every argument passed through unchanged:

    python -m tutor.llama_server --model MODEL.gguf --host 0.0.0.0 --port 8080 --n_ctx 4096
"""

from __future__ import annotations

import runpy
import sys

from tutor.config import Settings
from tutor.engine import model_params, probe_in_child
from tutor.errors import TutorError


def main(argv: list[str]) -> int:
    try:
        report = probe_in_child(Settings.load().weight_repack)
    except TutorError as exc:  # a bad TUTOR_WEIGHT_REPACK, or a build that dies on this CPU
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    if report.missing:
        print(f"Error: {report.mismatch_message()}", file=sys.stderr)
        return 2
    print(
        f"tutor.llama_server: reordenar pesos {'sí' if report.repack else 'no'} ({report.repack_reason})",
        file=sys.stderr,
    )
    sys.argv = ["llama_cpp.server", *argv]
    with model_params(use_extra_bufts=report.repack):  # every Llama the server builds inside gets it
        runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
