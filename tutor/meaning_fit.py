"""Fitting the meaning check (tutor/meaning.py) on labelled claims: `tutor verifier train`.

Input: Labelled rows (what the verifier measured of each labelled sentence of eval/claims.jsonl, made by
tutor.claims.labelled_evidence). Output: a MeaningModel whose threshold, pooled and for each writer with
enough rows, is the lowest whose cross-validated tuning replies show sentences at least `precision`
supported (choose_threshold); the curves it was chosen on are saved with it, so that
TUTOR_VERIFIER_PRECISION can pick another point without refitting.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tutor.meaning import FEATURES, PRECISION, Evidence, MeaningModel, choose_threshold

SEED = 0
WRITER_ROWS = 60  # a writer with fewer labelled rows shares the pooled threshold (too few for its own curve)


@dataclass(frozen=True)
class Labelled:
    evidence: Evidence
    supported: bool
    group: str  # the question: cross-validation folds never split one
    answer: str  # the reply it belongs to (the threshold is chosen on whole replies)
    writer: str = ""  # the catalogue model that wrote it: each writer gets its own threshold (WRITER_ROWS)


def fit(
    rows: Sequence[Labelled],
    embedder: str,
    *,
    min_kept_share: float = 0.5,
    features: tuple[str, ...] = FEATURES,
    precision: float = PRECISION,
) -> MeaningModel:
    """Fit on every row after choosing the threshold on cross-validated predictions (5 folds by question):
    the lowest whose shown sentences are at least `precision` supported, else the most precise one.
    With TOKEN_FEATURES, only the rows whose Evidence has an entropy."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_predict

    if features != FEATURES:
        rows = [r for r in rows if r.evidence.entropy_mean is not None]
    x = np.asarray([r.evidence.vector(features) for r in rows], dtype=float)
    y = np.asarray([r.supported for r in rows])
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    z = (x - mean) / scale
    classifier = LogisticRegression(C=1.0, max_iter=2000, random_state=SEED)
    folds = GroupKFold(n_splits=5)
    probs = cross_val_predict(classifier, z, y, groups=[r.group for r in rows], cv=folds, method="predict_proba")[:, 1]
    lexical = reply_figures(rows, [r.evidence.lexical_reason is None for r in rows], min_kept_share)
    clean = [r.evidence.invented is None for r in rows]

    def curve_of(members: list[int]) -> list[tuple[float, dict[str, float]]]:
        points = []
        for candidate in np.arange(0.05, 0.96, 0.05):
            got = reply_figures([rows[i] for i in members], [clean[i] and probs[i] >= candidate for i in members],
                                min_kept_share)  # fmt: skip
            if got["recall"] > 0:
                points.append((round(float(candidate), 2), got))
        return points

    curve = curve_of(list(range(len(rows))))
    threshold, figures = choose_threshold(curve, precision)
    # Each writer's own curve where it has enough rows: Qwen's fluent sentences and Gemma's copies score
    # differently, and one pooled threshold is too strict for one and too loose for the other.
    by_writer: dict[str, Any] = {}
    for writer in sorted({r.writer for r in rows if r.writer}):
        members = [i for i, r in enumerate(rows) if r.writer == writer]
        if len(members) < WRITER_ROWS:
            continue
        if points := curve_of(members):
            chosen, got = choose_threshold(points, precision)
            by_writer[writer] = {"threshold": chosen, "examples": len(members), "meaning": got, "curve": dict(points)}
    classifier.fit(z, y)
    return MeaningModel(
        embedder, mean, scale, classifier.coef_[0], float(classifier.intercept_[0]), threshold, features,
        {"examples": len(rows), "target_precision": precision,
         "cross_validation": {"meaning": figures, "lexical": lexical, "curve": dict(curve), "by_writer": by_writer}},
        {writer: row["threshold"] for writer, row in by_writer.items()},
    )  # fmt: skip


def reply_figures(rows: Sequence[Labelled], keep: Sequence[bool], min_kept_share: float) -> dict[str, float]:
    """Precision and recall of what a student would see: a reply's kept sentences, when they are at least
    `min_kept_share` of its words (as verify.py decides)."""
    by_reply: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        by_reply.setdefault(row.answer, []).append(i)
    shown = [False] * len(rows)
    for members in by_reply.values():
        words = [len(rows[i].evidence.sentence.split()) for i in members]
        kept = sum(w for w, i in zip(words, members) if keep[i])
        if kept and kept >= min_kept_share * sum(words):
            for i in members:
                shown[i] = bool(keep[i])
    passed = sum(shown)
    right = sum(s and r.supported for s, r in zip(shown, rows))
    supported = sum(r.supported for r in rows)
    return {"precision": round(right / passed, 4) if passed else 0.0,
            "recall": round(right / supported, 4) if supported else 0.0}  # fmt: skip
