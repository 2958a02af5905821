"""Gate benchmark: what the language detector and the gate cost per student message, in one run.

    .venv/bin/python bench/gate.py [--data-dir DIR] [--dataset eval/dev.jsonl] [--repeat 2]

Prints p50 / p95 / max in milliseconds over the dataset's messages (with their history); it asserts
nothing (these machines are shared and noisy). Issue 4's target: the gate adds at most 30 ms p95.
- "gate alone": Gate.check computing the message's e5 vector itself (nothing cached).
- "gate added to the pipeline": detect + Gate.check when the retriever's query vector is already
  computed. The retriever embeds the same text whenever the query is the message itself (no history,
  or a long message), and the embedder computes a text once, so this is the pipeline's time with the
  gate minus its time without it. Follow-ups still pay for their own vectors.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import tutor  # noqa: F401  (offline switches)
from tutor.config import Settings
from tutor.embed import E5Embedder
from tutor.evaluate import load_dataset
from tutor.gate import Gate, model_folder
from tutor.gate.model import GateModel
from tutor.index import Index, ingest
from tutor.language import LanguageDetector
from tutor.retrieve import clean_query, search_query

REPO = Path(__file__).resolve().parent.parent


def summary(name: str, seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return f"{name:<34} n={len(ms):<4} p50 {statistics.median(ms):6.1f}  p95 {p95:6.1f}  max {ms[-1]:7.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None, help="default: TUTOR_DATA_DIR or the user folder")
    parser.add_argument("--dataset", type=Path, default=REPO / "eval" / "dev.jsonl")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    settings = Settings(**({"data_dir": args.data_dir} if args.data_dir else {}), knowledge_dir=REPO / "knowledge")
    if not (settings.index_dir / "manifest.json").exists():
        ingest(settings, E5Embedder(threads=settings.embed_threads), progress=False)
    # Two embedders with separate caches: one gate always computes its vector, the other finds the
    # retriever's vector already computed, as in the pipeline.
    alone_e5, shared_e5 = (
        E5Embedder(threads=settings.embed_threads),
        E5Embedder(threads=settings.embed_threads),
    )
    index = Index.open(settings, alone_e5)
    chunks, vectors = index.chunk_vectors()
    model = GateModel.load(model_folder(settings), alone_e5)
    alone = Gate(alone_e5, chunks, vectors, model, window_chars=settings.gate_window_chars)
    shared = Gate(shared_e5, chunks, vectors, model, window_chars=settings.gate_window_chars)
    detector = LanguageDetector()
    items = load_dataset(args.dataset).items

    detect_s, alone_s, added_s, embed_s = [], [], [], []
    for _ in range(args.repeat):
        for item in items:
            start = time.perf_counter()
            language = detector.detect(item.question, item.history)
            detect_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            alone.check(item.question, language, item.history)
            alone_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            shared_e5.embed_queries([clean_query(search_query(item.question, item.history), 2000)])
            embed_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            shared.check(item.question, detector.detect(item.question, item.history), item.history)
            added_s.append(time.perf_counter() - start)

    print(f"{len(items)} messages of {args.dataset} x {args.repeat}; e5 with {settings.embed_threads} thread(s)")
    print(summary("language detection", detect_s))
    print(summary("retriever's query vector (e5)", embed_s))
    print(summary("gate alone (its own e5 vector)", alone_s))
    print(summary("gate added to the pipeline", added_s))


if __name__ == "__main__":
    main()
