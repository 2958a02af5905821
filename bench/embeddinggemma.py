"""EmbeddingGemma in one precision: load time, RSS, query latency, time to embed the course's chunks.

    .venv/bin/python bench/embeddinggemma.py [--precision float32|bfloat16] [--folder DIR] [--threads 1] [--json]

Run each precision in its own process (peak RSS is per process). The folder defaults to the catalogue
install in TUTOR_DATA_DIR/models (`tutor models install embeddinggemma-300m`); the bfloat16 copy beside
it is written on the first bfloat16 run, so run bfloat16 once before measuring it. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from pathlib import Path

import tutor  # noqa: F401  (offline switches)
from tutor.catalogue import find
from tutor.config import Settings
from tutor.embed import EmbeddingGemmaEmbedder
from tutor.evaluate import load_dataset
from tutor.ingest import chunk_file, knowledge_files

REPO = Path(__file__).resolve().parent.parent


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--folder", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    settings = Settings()
    folder = args.folder or find("embeddinggemma-300m").target(settings.data_dir)
    started = time.perf_counter()
    embedder = EmbeddingGemmaEmbedder(folder, precision=args.precision, threads=args.threads)
    load_s, loaded_mib = time.perf_counter() - started, rss_mib()
    questions = [item.question for item in load_dataset(REPO / "eval" / "dev.jsonl").items][:40]
    latencies = []
    for question in questions:
        started = time.perf_counter()
        embedder.embed_queries([question])
        latencies.append((time.perf_counter() - started) * 1000)
    root = settings.knowledge_dir
    texts = [c.embed_text for f in knowledge_files(root) for c in chunk_file(f, root)]
    started = time.perf_counter()
    embedder.embed_passages(texts)
    chunks_s = time.perf_counter() - started
    latencies.sort()
    figures = {
        "precision": args.precision, "load_s": round(load_s, 1), "rss_loaded_mib": round(loaded_mib),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "query_p50_ms": round(statistics.median(latencies), 1),
        "query_p95_ms": round(latencies[int(0.95 * len(latencies)) - 1], 1),
        "chunks": len(texts), "chunks_s": round(chunks_s, 1),
    }  # fmt: skip
    print(json.dumps(figures) if args.json else "\n".join(f"{k}: {v}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
