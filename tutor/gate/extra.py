"""An optional second opinion for the gate: a local Hugging Face text-classification model.

An instructor with a toxicity or prompt-injection classifier in a local folder sets
TUTOR_GATE_EXTRA_MODEL (the folder), TUTOR_GATE_EXTRA_LABELS (its labels mapped to the gate's unsafe
reasons, e.g. {"INJECTION": "prompt_injection"}) and TUTOR_GATE_EXTRA_THRESHOLD. Its verdict can only
make the gate stricter: a mapped label at or above the threshold turns the message unsafe.
It never downloads (local files only) and knows nothing about the course.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from tutor.errors import TutorError
from tutor.gate.model import UNSAFE


class ExtraModelError(TutorError):
    """The configured extra gate model cannot be used."""


class ExtraClassifier:
    """transformers' AutoModelForSequenceClassification on CPU, one message at a time."""

    def __init__(self, folder: Path, labels: Mapping[str, str], threshold: float) -> None:
        folder = folder.expanduser()
        if not (folder / "config.json").is_file():
            raise ExtraModelError(
                f"No hay un modelo de clasificación de transformers en «{folder}» (falta config.json). "
                "Corrija TUTOR_GATE_EXTRA_MODEL o déjelo vacío."
            )
        bad = {name: reason for name, reason in labels.items() if reason not in UNSAFE}
        if not labels or bad:
            raise ExtraModelError(
                f"TUTOR_GATE_EXTRA_LABELS debe asignar etiquetas del modelo a {', '.join(UNSAFE)}; "
                f'no valen: {bad or "una lista vacía"}. Ejemplo: {{"INJECTION": "prompt_injection"}}'
            )
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        try:
            self._tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            self._model = AutoModelForSequenceClassification.from_pretrained(str(folder), local_files_only=True)
        except Exception as exc:  # transformers raises many kinds; the instructor needs one message
            raise ExtraModelError(f"No se pudo cargar el modelo de «{folder}»: {exc}") from exc
        self._model.eval()
        names = {int(i): str(name) for i, name in self._model.config.id2label.items()}
        unknown = sorted(set(labels) - set(names.values()))
        if unknown:
            raise ExtraModelError(
                f"El modelo de «{folder}» no tiene las etiquetas {unknown}; las suyas son {sorted(names.values())}."
            )
        self._reasons = {i: labels[name] for i, name in names.items() if name in labels}
        self._multi_label = self._model.config.problem_type == "multi_label_classification"
        self._torch = torch
        self.threshold = threshold

    def classify(self, text: str) -> tuple[str, float] | None:
        """(unsafe reason, probability) when a mapped label reaches the threshold, else None."""
        torch = self._torch
        inputs = self._tokenizer(text, truncation=True, max_length=512, return_tensors="pt")
        with torch.no_grad():
            logits = self._model(**inputs).logits[0]
        probs = torch.sigmoid(logits) if self._multi_label else torch.softmax(logits, dim=-1)
        hits = [(float(probs[i]), reason) for i, reason in self._reasons.items() if float(probs[i]) >= self.threshold]
        if not hits:
            return None
        score, reason = max(hits)
        return reason, round(score, 4)
