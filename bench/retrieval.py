"""Retrieval benchmark per embedder: ingest time (cold, then incremental with nothing changed), query
latency (p50/p95, follow-ups searched as the pipeline does) and RSS.

    .venv/bin/python bench/retrieval.py [--data-dir DIR] [--queries eval/dev.jsonl] [--embedder E ...]

`--embedder` takes what TUTOR_EMBEDDER takes (default: the configured one, e5); it may be repeated.
TUTOR_BENCH_EMBEDDINGGEMMA=<folder of embeddinggemma-300m> adds that model to the list.
Prints figures measured in this one run; it asserts nothing (these machines are shared and noisy).
Targets from issue 2: incremental re-ingest under 2 s, query p95 under 50 ms (e5).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tutor  # noqa: F401  (offline switches)
from tutor.config import Settings
from tutor.embed import load_embedder
from tutor.evaluate import load_dataset
from tutor.index import Index, ingest
from tutor.retrieve import Retriever, search_query

REPO = Path(__file__).resolve().parent.parent


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[int(0.95 * (len(ordered) - 1))]


def timed_ms(call) -> float:
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1000


def bench(choice: str, data_dir: Path, questions: list[tuple[str, str]]) -> None:
    """Ingest the course with one embedder, then time every question; prints one block."""
    settings = Settings(data_dir=data_dir, knowledge_dir=REPO / "knowledge", embedder=choice)
    start = time.perf_counter()
    embedder = load_embedder(settings)
    load_s = time.perf_counter() - start
    cold = ingest(settings, embedder, rebuild=True, progress=False)
    warm = [ingest(settings, embedder, progress=False).seconds for _ in range(3)]
    start = time.perf_counter()
    index = Index.open(settings, embedder)
    open_s = time.perf_counter() - start
    rss_after_open = rss_mib()
    retriever = Retriever(index, settings)
    retriever.search(questions[0][0])  # warm-up: first-call allocations are not a student's latency
    latencies = [timed_ms(lambda: retriever.search(q, question=own)) for q, own in questions]
    embed_ms = [timed_ms(lambda: embedder.embed_queries([q])) for q, _ in questions]
    p50, p95 = percentiles(latencies)
    e50, e95 = percentiles(embed_ms)

    # A student's `tutor ingest` runs in a new process: time that too (Python start-up and imports included).
    env = {**os.environ, "TUTOR_DATA_DIR": str(data_dir), "TUTOR_KNOWLEDGE_DIR": str(settings.knowledge_dir),
           "TUTOR_EMBEDDER": choice}  # fmt: skip
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tutor", "ingest", "--quiet"], env=env, check=True, capture_output=True)
    cli_ingest_s = time.perf_counter() - start

    print(f"embedder: {embedder.name} {embedder.version} (load {load_s:.2f} s); profile {retriever.profile}")
    print(
        f"  cold ingest: {cold.chunks} chunks + {cold.sentences_embedded} sentences ({embedder.name})"
        f" + {cold.use_sentences_embedded} (USE) in {cold.seconds:.1f} s"
    )
    print(f"  incremental ingest, nothing changed: {min(warm):.2f} s best, {max(warm):.2f} s worst of 3 "
          f"(target < 2 s; {cold.seconds / min(warm):.0f}x faster than cold)")  # fmt: skip
    print(f"  `tutor ingest` in a new process, nothing changed: {cli_ingest_s:.2f} s wall (start-up included)")
    print(f"  open index with self-check: {open_s:.2f} s")
    follow_ups = sum(q != own for q, own in questions)
    print(f"  query latency over {len(latencies)} questions ({follow_ups} searched with their topic too): "
          f"p50 {p50:.1f} ms, p95 {p95:.1f} ms, max {max(latencies):.1f} ms")  # fmt: skip
    print(f"  of which one query embedding: p50 {e50:.1f} ms, p95 {e95:.1f} ms ({e50 / p50:.0%} of p50)")
    print(f"  RSS after loading the index: {rss_after_open:.0f} MiB; after the queries: {rss_mib():.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None, help="default: a fresh temporary folder")
    parser.add_argument("--queries", type=Path, default=REPO / "eval" / "dev.jsonl")
    parser.add_argument("--embedder", action="append", help="as TUTOR_EMBEDDER (repeatable); default: configured")
    args = parser.parse_args()
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="tutor-bench-"))
    choices = args.embedder or [Settings().embedder]
    if os.environ.get("TUTOR_BENCH_EMBEDDINGGEMMA"):
        choices.append(os.environ["TUTOR_BENCH_EMBEDDINGGEMMA"])
    items = load_dataset(args.queries).items
    questions = [(search_query(i.question, i.history), i.question) for i in items]
    for n, choice in enumerate(choices):
        bench(choice, data_dir / f"embedder-{n}", questions)


if __name__ == "__main__":
    main()
