"""How sure was the model of each labelled sentence? Token statistics of eval/claims.jsonl's answers.

Usage: python tools/claims_token_stats.py --gguf MODEL=PATH [--gguf …] [--claims eval/claims.jsonl]
       [--out eval/claims-tokens.jsonl]

For every stored answer written by a MODEL given with --gguf, the GGUF reads the answer's stored
prompt followed by the answer (teacher forcing, one evaluation, no sampling) and each answer token's
log-probability and the entropy of the distribution it was drawn from are taken from the logits.
Each claim (sentence) gets the mean and minimum over its tokens; a line of --out per claim:

    {"id": CLAIM_ID, "model": MODEL, "tokens": 17, "logprob_mean": -0.41, "logprob_min": -3.2,
     "entropy_mean": 0.62, "entropy_max": 2.9}

Chat-style answers are rendered with the GGUF's own chat template; the stored prompt is one text,
so the system message is what comes before its first "Material del curso:" (how the chat prompts
read when the claims were written) and the user message the rest: an approximation of what the
model saw. Weight repacking is off (llama.cpp's repacking crashes on AMX CPUs; MODELS.md §1). The
output is rewritten whole, in claim order; a model's answers take about 3 s each for the packaged
Gemma and 13 s for Qwen2.5-Coder-1.5B on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tutor.chat import chat_formatter  # noqa: E402
from tutor.claims import Claim, answers, load_claims  # noqa: E402
from tutor.engine import entropy, model_params  # noqa: E402
from tutor.meaning import span_means  # noqa: E402
from tutor.text import write_atomic  # noqa: E402

N_CTX = 4096
SYSTEM_END = "\nMaterial del curso:"


Spans = list[tuple[int, int]]


def token_stats(llama: Any, prompt_tokens: list[int], answer: str) -> tuple[Spans, np.ndarray, np.ndarray]:
    """Each answer token's character span, log-probability and entropy (nats) after the prompt."""
    tokens = llama.tokenize(answer.encode("utf-8"), add_bos=False, special=False)
    prompt_tokens = prompt_tokens[-(N_CTX - len(tokens)) :]
    llama.reset()
    llama.eval(prompt_tokens + tokens)
    logits = np.asarray(llama.scores[len(prompt_tokens) - 1 : len(prompt_tokens) + len(tokens) - 1], dtype=np.float64)
    top = logits.max(axis=1, keepdims=True)
    log_z = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
    logprobs = logits[np.arange(len(tokens)), tokens] - log_z
    entropies = np.asarray([entropy(row) for row in logits])  # as the engine computes it while generating
    spans, at = [], 0
    for token in tokens:
        width = len(llama.detokenize([token]).decode("utf-8", "replace"))
        spans.append((at, at + width))
        at += width
    return spans, logprobs, entropies


def prompt_tokens(llama: Any, claim: Claim) -> list[int]:
    """The stored prompt as the model read it: its chat template when the GGUF has one."""
    template = llama.metadata.get("tokenizer.chat_template")
    if not template:
        return list(llama.tokenize((claim.prompt + " ").encode("utf-8"), add_bos=True, special=True))
    cut = claim.prompt.find(SYSTEM_END)
    system, user = (claim.prompt[:cut], claim.prompt[cut + 1 :]) if cut > 0 else ("", claim.prompt)
    messages = [{"role": "system", "content": system}] if system else []
    formatter, _ = chat_formatter(llama, str(template))  # as the tutor renders it
    text = formatter(messages=[*messages, {"role": "user", "content": user}]).prompt
    return list(llama.tokenize(text.encode("utf-8"), add_bos=False, special=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gguf", action="append", required=True, metavar="MODEL=PATH")
    parser.add_argument("--claims", type=Path, default=Path("eval/claims.jsonl"))
    parser.add_argument("--out", type=Path, default=Path("eval/claims-tokens.jsonl"))
    args = parser.parse_args(argv)
    paths = dict(item.split("=", 1) for item in args.gguf if "=" in item)
    if len(paths) != len(args.gguf):
        parser.error("--gguf takes MODEL=PATH")
    claims = load_claims(args.claims)
    old = {}
    if args.out.exists():
        old = {row["id"]: row for row in map(json.loads, args.out.read_text(encoding="utf-8").splitlines())}
    stats: dict[str, dict[str, Any]] = {}
    for model, path in paths.items():
        groups = [g for g in answers(claims.items) if g[0].model == model and g[0].prompt]
        if not groups:
            print(f"{args.claims}: no answers by {model} with a stored prompt", file=sys.stderr)
            return 1
        with model_params(use_extra_bufts=False):
            from llama_cpp import Llama

            llama = Llama(path, n_ctx=N_CTX, n_threads=2, logits_all=True, verbose=False, seed=0)
        for group in tqdm(groups, desc=model, unit="answer"):
            spans, logprobs, entropies = token_stats(llama, prompt_tokens(llama, group[0]), group[0].answer)
            said = [claim.sentence for claim in group]
            counts = span_means(group[0].answer, spans, [1.0] * len(spans), said, reduce=len)
            figures = (("logprob_mean", logprobs, np.mean), ("logprob_min", logprobs, np.min),
                       ("entropy_mean", entropies, np.mean), ("entropy_max", entropies, np.max))  # fmt: skip
            means = {name: span_means(group[0].answer, spans, list(values), said, reduce=reduce)
                     for name, values, reduce in figures}  # fmt: skip
            for i, claim in enumerate(group):
                if counts[i] is None:  # a sentence the answer's text does not hold: no figures
                    continue
                stats[claim.id] = {"id": claim.id, "model": model, "tokens": int(counts[i]),
                                   **{name: round(float(got[i]), 4) for name, got in means.items()}}  # fmt: skip
        del llama
    merged = {**old, **stats}
    rows = [merged[c.id] for c in claims.items if c.id in merged]
    write_atomic(args.out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    print(f"{len(stats)} claims measured, {len(rows)} in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
