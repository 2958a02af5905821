"""Would the writer's own token statistics help the meaning check? A measurement, not a change.

Usage: python tools/verifier_token_features.py [--claims eval/claims.jsonl] [--tokens eval/claims-tokens.jsonl]

Rows are what `tutor verifier train` fits on (the configured embedder's evidence for each labelled
claim whose reply the lexical rules do not refuse whole) that also have token statistics
(tools/claims_token_stats.py). For the 17 features of tutor/meaning.py alone and with the statistics
added, a logistic regression as meaning.fit() makes it: AUC from 5-fold cross-validation by question
on the tuning part, and of the model fitted on all of it on the held-apart part; then precision /
recall of the shown sentences (meaning.reply_figures) at fixed thresholds. Per model and pooled.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tutor.claims import labelled_evidence, load_claims  # noqa: E402
from tutor.cli.common import open_index  # noqa: E402
from tutor.config import Settings  # noqa: E402
from tutor.language import LanguageDetector  # noqa: E402
from tutor.meaning import SEED, Labelled, reply_figures  # noqa: E402
from tutor.verify import Verifier  # noqa: E402

STATS = ("logprob_mean", "logprob_min", "entropy_mean", "entropy_max")
THRESHOLDS = (0.5, 0.6, 0.7, 0.8)


def evaluate(tune: list[Labelled], held: list[Labelled], x_tune: np.ndarray, x_held: np.ndarray) -> str:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupKFold

    y_tune, y_held = np.asarray([r.supported for r in tune]), np.asarray([r.supported for r in held])
    mean, scale = x_tune.mean(axis=0), x_tune.std(axis=0)
    scale[scale == 0] = 1.0
    z_tune, z_held = (x_tune - mean) / scale, (x_held - mean) / scale
    cv = np.zeros(len(tune))
    for fit_on, score_on in GroupKFold(n_splits=5).split(z_tune, y_tune, [r.group for r in tune]):
        model = LogisticRegression(C=1.0, max_iter=3000, random_state=SEED).fit(z_tune[fit_on], y_tune[fit_on])
        cv[score_on] = model.predict_proba(z_tune[score_on])[:, 1]
    model = LogisticRegression(C=1.0, max_iter=3000, random_state=SEED).fit(z_tune, y_tune)
    held_probs = model.predict_proba(z_held)[:, 1]
    line = f"AUC {roc_auc_score(y_tune, cv):.3f} / {roc_auc_score(y_held, held_probs):.3f} |"
    for threshold in THRESHOLDS:
        figures = []
        for rows, probs in ((tune, cv), (held, held_probs)):
            keep = [r.evidence.invented is None and p >= threshold for r, p in zip(rows, probs)]
            got = reply_figures(rows, keep, 0.5)
            figures.append(f"{got['precision']:.2f}/{got['recall']:.2f}")
        line += f" @{threshold}: {' '.join(figures)}"
    return line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--claims", type=Path, default=Path("eval/claims.jsonl"))
    parser.add_argument("--tokens", type=Path, default=Path("eval/claims-tokens.jsonl"))
    args = parser.parse_args(argv)
    claims = load_claims(args.claims)
    tokens = {row["id"]: row for row in map(json.loads, args.tokens.read_text(encoding="utf-8").splitlines())}
    claim_id = {(c.answer_id, c.sentence): c.id for c in claims.items}
    index = open_index(Settings())
    detector = LanguageDetector()
    lexical = Verifier(index, detect_language=lambda t: detector.detect(t, ()), meaning=None)
    parts = {}
    for part in ("tune", "heldout"):
        rows, _ = labelled_evidence([c for c in claims.items if c.split == part], lexical, index)
        parts[part] = [(r, tokens[i]) for r in rows if (i := claim_id.get((r.answer, r.evidence.sentence))) in tokens]
    print(f"{index.embedder.name}: {len(parts['tune'])} tune rows, {len(parts['heldout'])} held-apart rows with token "
          "statistics; AUC tune (cross-validated) / held-apart, then precision/recall tune, held-apart")  # fmt: skip
    for model in ("", "gemma-3-270m", "qwen2.5-coder-1.5b"):
        tune = [(r, t) for r, t in parts["tune"] if t["model"].startswith(model)]
        held = [(r, t) for r, t in parts["heldout"] if t["model"].startswith(model)]
        print(f"== {model or 'both models'} ({len(tune)} / {len(held)})")
        if not tune or not held:
            continue
        for name, stats in (("features", ()), ("+ entropy_mean", ("entropy_mean",)), ("+ all four", STATS)):
            x_tune, x_held = (
                np.asarray([[*r.evidence.vector(), *(t[s] for s in stats)] for r, t in rows], dtype=float)
                for rows in (tune, held)
            )
            print(f"  {name:16s}", evaluate([r for r, _ in tune], [r for r, _ in held], x_tune, x_held))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
