"""Verifier benchmark: what checking one generated answer costs, lexical rules against the meaning check.

    .venv/bin/python bench/verifier.py [--claims eval/claims.jsonl]

Re-checks every stored answer of the claims file against its stored passages, with the configured
embedder's index (built the first time), and prints p50 / p95 in milliseconds per answer for each
verifier, measured in this one run: the lexical rules, the meaning check, and the meaning check given
the writer's token entropies (CLAIMS-tokens.jsonl, as the tutor gets them from llama.cpp). It asserts
nothing (these machines are shared and noisy).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from tutor.claims import answers, load_claims, load_entropies, stored_entropy, stored_passages
from tutor.cli.common import open_index
from tutor.config import Settings
from tutor.verify import Verifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims", type=Path, default=Path("eval/claims.jsonl"))
    args = parser.parse_args()
    index = open_index(Settings())
    groups = answers(load_claims(args.claims).items)
    figures = {}
    entropies = load_entropies(args.claims.with_name(f"{args.claims.stem}-tokens.jsonl"))
    runs = (("lexical rules", Verifier(index, meaning=None), None), ("meaning check", Verifier(index), None),
            ("+ entropy", Verifier(index), entropies))  # fmt: skip
    for name, verifier, given in runs:
        times = []
        for group in groups:
            first = group[0]
            passages = stored_passages(first, index, set())
            entropy = stored_entropy(group, given) if given else None
            start = time.perf_counter()
            verifier.check(first.answer, question=first.question, passages=passages, language=first.language,
                           prompt=first.prompt, entropy=entropy, writer=first.model)  # fmt: skip
            times.append(1000 * (time.perf_counter() - start))
        times.sort()
        figures[name] = statistics.median(times)
        p95 = times[int(0.95 * len(times))]
        print(f"{name:<14} {len(times)} answers  p50 {figures[name]:.1f} ms  p95 {p95:.1f} ms")
    print(f"ratio meaning / lexical (p50): {figures['meaning check'] / figures['lexical rules']:.2f}, "
          f"with entropy / lexical: {figures['+ entropy'] / figures['lexical rules']:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
