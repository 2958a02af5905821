"""Generation benchmark: raw llama-cpp-python against the tutor's engine, prefix reuse, peak RSS.

    .venv/bin/python bench/generation.py [--gguf PATH] [--threads 1] [--max-tokens 128] [--repack auto|on|off] [--json]

Same prompt (about 1,000 tokens of course text plus a question), same model, same threads, greedy. Raw
and tutor runs alternate, each with a different first line so neither reuses a cached prefix; figures
are medians of --reps runs. Prompt tokens/s is prompt tokens / time to first token; generation
tokens/s counts streamed pieces (one per token) after the first. The raw Llama runs in this process
with llama-cpp-python's defaults (weight repacking on, except on an AMX CPU, where it crashes); the
tutor's engine runs in its own process (tutor/engine.py) with repacking as --repack says, so `--repack
off` measures what turning it off costs against a same-run control. Also: the engine's start (spawn +
load, and the parent's vocabulary-only Llama), count_tokens on the prompt (planning's cost), and peak
RSS of both processes. It asserts nothing (shared, noisy machines). Targets from issue 3: tutor/raw
generation >= 0.95; warm TTFT at most a fifth of cold.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import resource
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import tutor  # noqa: F401  (offline switches)
from tutor.chat import LlamaCppModel, Prompt
from tutor.config import Settings
from tutor.models import model_file
from tutor.types import ChatPrompt, Message, TextPrompt

REPO = Path(__file__).resolve().parent.parent
QUESTIONS = ("¿Qué diferencia a BERT de GPT?", "¿Para qué sirve el mecanismo de atención?")


def course_text(model: LlamaCppModel, tokens: int) -> str:
    """The first `tokens` tokens' worth of the course body, cut at a paragraph."""
    body = (REPO / "knowledge" / "llms-generativos-discriminativos.md").read_text(encoding="utf-8")
    paragraphs = [p for p in body.split("---", 2)[-1].split("\n\n") if p.strip()]
    text = ""
    for paragraph in paragraphs:
        if model.count_tokens(TextPrompt(text + paragraph)) > tokens:
            break
        text += paragraph + "\n\n"
    return text


def build(style: str, session: int, context: str, question: str) -> Prompt:
    # The session line comes first: a new number means a new prefix, hence a cold start.
    if style == "chat":
        system = f"Sesión {session}. Eres el tutor del curso. Responde con el material del curso."
        return ChatPrompt(
            (
                Message("system", system),
                Message("user", f"Material del curso:\n{context}\nPregunta: {question}"),
            )
        )
    return TextPrompt(
        f"Sesión {session}.\nMaterial del curso:\n{context}\nPregunta del estudiante: {question}\nRespuesta del tutor:"
    )


def timed(pieces: Iterator[str], prompt_tokens: int) -> dict[str, float]:
    start = time.perf_counter()
    first = end = 0.0
    count = 0
    for _ in pieces:
        end = time.perf_counter()
        first = first or end
        count += 1
    ttft = first - start
    return {
        "prompt_tps": prompt_tokens / ttft,
        "gen_tps": (count - 1) / (end - first) if count > 1 else 0.0,
        "ttft_s": ttft,
        "gen_tokens": count,
    }


def raw_stream(llama, prompt: Prompt, max_tokens: int) -> Iterator[str]:
    """llama-cpp-python used directly, as its README shows, with the tutor's sampling settings."""
    options = dict(max_tokens=max_tokens, stream=True, temperature=0.0, top_p=0.95, repeat_penalty=1.1)
    if isinstance(prompt, ChatPrompt):
        chunks = llama.create_chat_completion(
            messages=[{"role": m.role, "content": m.content} for m in prompt.messages], **options
        )
        texts = (c["choices"][0]["delta"].get("content") for c in chunks)
    else:
        texts = (c["choices"][0]["text"] for c in llama.create_completion(prompt.text, **options))
    return (text for text in texts if text)  # the closing chunk carries no text, as in the engine


def median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: round(statistics.median(r[key] for r in runs), 3) for key in runs[0]}


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def hwm_mib(pid: int | None) -> float:
    """Peak RSS (VmHWM) of another process, 0 when unknown."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (OSError, TypeError):
        return 0.0
    line = next((line for line in status.splitlines() if line.startswith("VmHWM:")), "VmHWM: 0 kB")
    return int(line.split()[1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gguf", type=Path, default=None, help="default: the packaged Gemma 3 270M")
    parser.add_argument("--threads", type=int, default=1, help="n_threads and n_threads_batch")
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--context-tokens", type=int, default=1000)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--repack", choices=["auto", "on", "off"], default="auto", help="the engine's weight repacking")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()
    path, _ = model_file(Settings(gguf=args.gguf))
    params = dict(n_ctx=args.n_ctx, n_threads=args.threads, n_threads_batch=args.threads, seed=42)

    started = time.perf_counter()
    engine = LlamaCppModel(path, repack=args.repack, **params)  # type: ignore[arg-type]
    start_s = time.perf_counter() - started
    context = course_text(engine, args.context_tokens)
    counted = build(engine.style, 0, context, QUESTIONS[0])
    count_runs = []
    for _ in range(20):
        t0 = time.perf_counter()
        engine.count_tokens(counted)
        count_runs.append(time.perf_counter() - t0)
    # Cold vs warm: the first question on a new prefix, then a second question on the same prefix.
    cold, warm = [], []
    for rep in range(args.reps):
        session = 100 + rep
        for question, into in zip(QUESTIONS, (cold, warm)):
            prompt = build(engine.style, session, context, question)
            into.append(timed(engine.stream(prompt, max_tokens=8), engine.count_tokens(prompt))["ttft_s"])
    rss_parent = peak_rss_mib()

    from llama_cpp import Llama

    from tutor.engine import model_params, probe_in_child

    # llama.cpp's default (repacking on), except on AMX CPUs, where repacking crashes (MODELS.md §1).
    with contextlib.redirect_stderr(io.StringIO()), model_params(use_extra_bufts=probe_in_child("auto").repack):
        llama = Llama(model_path=str(path), verbose=False, **params)
    raw_runs, tutor_runs = [], []
    for rep in range(args.reps):  # alternate, so noise from the shared machine hits both alike
        prompt = build(engine.style, 2 * rep, context, QUESTIONS[0])
        raw_runs.append(timed(raw_stream(llama, prompt, args.max_tokens), engine.count_tokens(prompt)))
        prompt = build(engine.style, 2 * rep + 1, context, QUESTIONS[0])
        tutor_runs.append(timed(engine.stream(prompt, max_tokens=args.max_tokens), engine.count_tokens(prompt)))
    raw, mine = median(raw_runs), median(tutor_runs)
    prompt_tokens = engine.count_tokens(build(engine.style, 0, context, QUESTIONS[0]))
    result = {
        "raw": raw,
        "tutor": mine,
        "ratio_gen_tps": round(mine["gen_tps"] / raw["gen_tps"], 3) if raw["gen_tps"] else None,
        "ttft_cold_s": round(statistics.median(cold), 3),
        "ttft_warm_s": round(statistics.median(warm), 3),
        "peak_rss_mib": round(rss_parent + hwm_mib(engine.engine_pid), 1),  # both processes of the tutor
        "peak_rss_parent_mib": round(rss_parent, 1),
        "peak_rss_engine_mib": round(hwm_mib(engine.engine_pid), 1),
        "engine_start_s": round(start_s, 2),
        "count_tokens_ms": round(statistics.median(count_runs) * 1000, 2),
        "repack": engine.info().repack,
    }
    if args.json:
        print(json.dumps(result))
        return
    info = engine.info()
    print(
        f"model: {info.name} ({path.name}), {info.style} style, n_threads={args.threads}, "
        f"n_threads_batch={args.threads}, n_ctx={args.n_ctx}"
    )
    print(
        f"prompt: {prompt_tokens} tokens (course text + question); up to {args.max_tokens} tokens out, "
        f"greedy; medians of {args.reps}"
    )
    print(f"{'':24}{'prompt tok/s':>14}{'gen tok/s':>12}{'TTFT s':>9}{'tokens out':>12}")
    for name, row in (("raw llama-cpp-python", raw), ("tutor engine", mine)):
        print(
            f"{name:24}{row['prompt_tps']:>14.1f}{row['gen_tps']:>12.1f}{row['ttft_s']:>9.2f}{row['gen_tokens']:>12.0f}"
        )
    print(f"ratio tutor/raw, generation tok/s: {result['ratio_gen_tps']} (target >= 0.95)")
    ratio = result["ttft_warm_s"] / result["ttft_cold_s"]
    print(
        f"TTFT, second question with the same prefix: cold {result['ttft_cold_s']:.2f} s, "
        f"warm {result['ttft_warm_s']:.3f} s (warm/cold {ratio:.3f}; target <= 0.2)"
    )
    print(
        f"engine: ready {result['engine_start_s']:.2f} s after LlamaCppModel() (process start, weights, the "
        f"parent's vocabulary), repacking {'on' if result['repack'] else 'off'}; count_tokens on the prompt "
        f"{result['count_tokens_ms']:.2f} ms"
    )
    print(
        f"peak RSS: {result['peak_rss_parent_mib']:.0f} MiB tutor process (before the raw Llama) + "
        f"{result['peak_rss_engine_mib']:.0f} MiB engine process; {peak_rss_mib():.0f} MiB this process once "
        "the raw Llama is loaded beside it"
    )


if __name__ == "__main__":
    main()
