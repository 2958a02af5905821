"""The gate's classifier: logistic regression over e5 vectors plus the similarity to the course.

Input: a message vector and the course's chunk vectors; output: probabilities of ten classes
(on_topic, chitchat, other_subject and the seven unsafe reasons). `train()` fits it on the packaged
examples, cross-validated, and picks the decision thresholds on the cross-validated predictions;
`GateModel.save/load` keep it as coefficients in .npz plus JSON metadata (never pickle), bound to the
embedder that produced the vectors. It does not apply rules or read history (the Gate in gate/__init__.py does).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tutor.embed import Embedder
from tutor.errors import TutorError

DATA_DIR = Path(__file__).resolve().parent / "data"
EXAMPLES = DATA_DIR / "train.jsonl"
CLASSES = ("on_topic", "chitchat", "other_subject", "harm", "self_harm", "harassment", "personal_data",
           "cheating", "prompt_injection", "disinformation")  # fmt: skip
UNSAFE = CLASSES[3:]
Label = Literal["on_topic", "off_topic", "unsafe"]
LABELS: dict[str, Label] = {
    "on_topic": "on_topic",
    "chitchat": "off_topic",
    "other_subject": "off_topic",
    **{r: "unsafe" for r in UNSAFE},
}
REASONS = ("course", "related", "chitchat", "other_subject", *UNSAFE)
# The similarity features are centred where MODELS.md §6 found the on/off-topic split (0.83) and
# scaled so that they weigh like the embedding dimensions under the same regularisation.
SIM_CENTER, SIM_SCALE = 0.83, 10.0
SEED = 0
FORMAT = 1


class GateModelError(TutorError):
    """The gate's classifier is missing, damaged, or was trained with another embedder."""


@dataclass(frozen=True)
class Example:
    text: str
    label: str
    reason: str
    language: str
    history: tuple[dict[str, str], ...] = ()

    @property
    def klass(self) -> str:
        return "on_topic" if self.label == "on_topic" else self.reason


def load_examples(path: Path = EXAMPLES) -> list[Example]:
    """The labelled examples; a malformed line is an error naming its number (the file is ours)."""
    examples = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        raw = json.loads(line)
        example = Example(raw["text"], raw["label"], raw["reason"], raw["language"], tuple(raw.get("history", ())))
        if example.reason not in REASONS or LABELS.get(example.klass) != example.label:
            raise GateModelError(f"{path}:{number}: label {example.label!r} / reason {example.reason!r} do not agree")
        examples.append(example)
    return examples


def context_text(text: str, history: Sequence[dict[str, str]]) -> str:
    """A follow-up read together with the student's previous turn ("¿y en qué se diferencia de BERT?")."""
    previous = [t.get("content", "") for t in history if t.get("role") == "user" and t.get("content", "").strip()]
    return f"{' '.join(previous[-1].split()[:60])} {text}" if previous else text


def features(vectors: np.ndarray, course: np.ndarray) -> np.ndarray:
    """Message vectors, then their best and mean top-3 cosine similarity to the course chunks."""
    sims = np.sort(vectors @ course.T, axis=1)
    best, top3 = sims[:, -1:], sims[:, -3:].mean(axis=1, keepdims=True)
    return np.hstack([vectors, SIM_SCALE * (best - SIM_CENTER), SIM_SCALE * (top3 - SIM_CENTER)]).astype(np.float32)


@dataclass
class GateModel:
    coef: np.ndarray  # (classes, features)
    intercept: np.ndarray  # (classes,)
    meta: dict[str, Any] = field(default_factory=dict)  # embedder, thresholds, data hash, CV figures

    @property
    def thresholds(self) -> dict[str, float]:
        return dict(self.meta["thresholds"])

    def probabilities(self, feats: np.ndarray) -> np.ndarray:
        """Softmax over the classes, one row per message (the multinomial model's own formula)."""
        logits = feats @ self.coef.T + self.intercept
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return np.asarray(exp / exp.sum(axis=1, keepdims=True), dtype=np.float32)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / "gate_model.npz", coef=self.coef, intercept=self.intercept)
        text = json.dumps(self.meta, ensure_ascii=False, indent=1, sort_keys=True)
        (folder / "gate_model.json").write_text(text + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder: Path, embedder: Embedder) -> GateModel:
        """The saved model, refused if another embedder (name or version) produced its training vectors."""
        try:
            meta = json.loads((folder / "gate_model.json").read_text(encoding="utf-8"))
            with np.load(folder / "gate_model.npz", allow_pickle=False) as arrays:
                coef, intercept = arrays["coef"], arrays["intercept"]
        except (OSError, ValueError, KeyError) as exc:
            raise GateModelError(
                f"No se puede leer el clasificador del filtro en «{folder}» ({exc}). Entrénelo con: tutor gate train"
            ) from exc
        trained = meta.get("embedder", {})
        if (trained.get("name"), trained.get("version")) != (embedder.name, embedder.version):
            raise GateModelError(
                f"El clasificador del filtro se entrenó con el modelo de embeddings «{trained.get('name')} "
                f"{trained.get('version')}», pero el tutor usa «{embedder.name} {embedder.version}». "
                "Entrénelo de nuevo con: tutor gate train"
            )
        if (
            meta.get("format") != FORMAT
            or tuple(meta.get("classes", ())) != CLASSES
            or coef.shape[1] != embedder.dim + 2
        ):
            raise GateModelError(
                f"El clasificador de «{folder}» es de otra versión del tutor. Entrénelo con: tutor gate train"
            )
        return cls(coef.astype(np.float32), intercept.astype(np.float32), meta)


Decide = Callable[[np.ndarray, int, dict[str, float]], str]


def train(
    examples: Sequence[Example], embedder: Embedder, course: np.ndarray, decide: Decide, *, folds: int = 5
) -> tuple[GateModel, str]:
    """Fit on every example after choosing C, class weights and thresholds by cross-validation.

    `decide(probs, i, thresholds)` is the gate's own decision for example i (rules included), so the
    thresholds are tuned for the gate as it runs, not for the bare classifier."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import classification_report
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    texts = [context_text(e.text, e.history) for e in examples]
    x = features(embedder.embed_queries(texts), course)
    y = np.array([CLASSES.index(e.klass) for e in examples])
    folds_ = StratifiedKFold(folds, shuffle=True, random_state=SEED)
    best: tuple[float, str | None, float, dict[str, float], np.ndarray] | None = None
    for c in (4.0, 16.0):
        for weight in ("balanced", None):
            model = LogisticRegression(C=c, max_iter=5000, class_weight=weight)
            probs = cross_val_predict(model, x, y, cv=folds_, method="predict_proba")
            thresholds, score = _tune(probs, examples, decide)
            if best is None or score > best[2]:
                best = (c, weight, score, thresholds, probs)
    assert best is not None
    c, weight, score, thresholds, probs = best
    thresholds["course"] = _course_threshold(examples, x[:, -2] / SIM_SCALE + SIM_CENTER)
    final = LogisticRegression(C=c, max_iter=5000, class_weight=weight).fit(x, y)
    predicted = [decide(probs[i], i, thresholds) for i in range(len(examples))]
    figures = _figures(examples, predicted)
    meta = {
        "format": FORMAT,
        "classes": list(CLASSES),
        "embedder": {"name": embedder.name, "version": embedder.version, "dim": embedder.dim},
        "features": {"sim_center": SIM_CENTER, "sim_scale": SIM_SCALE, "course_chunks": int(course.shape[0])},
        "thresholds": thresholds,
        "C": c,
        "class_weight": weight,
        "examples": len(examples),
        "examples_sha256": hashlib.sha256("\n".join(texts).encode()).hexdigest(),
        "cross_validation": {"folds": folds, **figures},
    }
    model_ = GateModel(final.coef_.astype(np.float32), final.intercept_.astype(np.float32), meta)
    report = classification_report(
        y,
        probs.argmax(axis=1),
        labels=list(range(len(CLASSES))),
        target_names=list(CLASSES),
        digits=3,
        zero_division=0,
    )
    summary = ", ".join(f"{k} {v}" for k, v in figures.items())
    return (
        model_,
        f"Clasificador ({folds} particiones, C={c}, class_weight={weight}):\n{report}\n"
        f"Filtro completo (reglas + umbrales): {summary}",
    )


def _tune(probs: np.ndarray, examples: Sequence[Example], decide: Decide) -> tuple[dict[str, float], float]:
    """Thresholds maximising balanced accuracy over the three labels with at most 2% false refusals."""
    best: tuple[dict[str, float], float] = ({"unsafe": 0.5, "on_topic": 0.5}, -1.0)
    for unsafe in (0.5, 0.6, 0.7, 0.8, 0.9):
        for on_topic in (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5):
            thresholds = {"unsafe": unsafe, "on_topic": on_topic}
            figures = _figures(examples, [decide(probs[i], i, thresholds) for i in range(len(examples))])
            score = (
                figures["balanced_accuracy"]
                if figures["false_refusal_rate"] <= 0.02
                else -figures["false_refusal_rate"]
            )
            if score > best[1]:
                best = (thresholds, score)
    return best


def _course_threshold(examples: Sequence[Example], best_sims: np.ndarray) -> float:
    """Below this similarity an on-topic question is 'related' (AI, not in the course) and the tutor
    says the course does not cover it, so it is set low: at most 2% of course questions fall under it."""
    course = np.sort([s for e, s in zip(examples, best_sims) if e.reason == "course" and not e.history])
    return round(float(course[int(0.02 * len(course))]), 4)


def _figures(examples: Sequence[Example], predicted: Sequence[str]) -> dict[str, float]:
    """predicted: the decided class of each example ('on_topic', 'chitchat', …)."""

    def recall(label: str) -> float:
        rows = [(e, p) for e, p in zip(examples, predicted) if e.label == label]
        # a greeting labelled "other subject" gets the wrong reply, as in tutor eval
        hits = [LABELS[p] == label and (e.reason != "chitchat" or p == "chitchat") for e, p in rows]
        return sum(hits) / len(hits)

    on, off, unsafe = recall("on_topic"), recall("off_topic"), recall("unsafe")
    return {
        "balanced_accuracy": round((on + off + unsafe) / 3, 4),
        "false_refusal_rate": round(1 - on, 4),
        "off_topic_recall": round(off, 4),
        "unsafe_recall": round(unsafe, 4),
    }
