"""Offline course tutor: retrieval over the course, grounded answers, a local GGUF model.

Importing the package switches every Hugging Face library to offline mode before any of them is
imported: the tutor must never reach a hub, and a load by hub id otherwise spends a minute on
retries before failing (MODELS.md). Heavy libraries are imported inside the adapters, not here.
"""

from __future__ import annotations

import os

for _name, _value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "ANONYMIZED_TELEMETRY": "False",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ[_name] = _value  # forced, not defaulted: "offline" is not a preference here

__version__ = "0.1.0"
__all__ = ["__version__"]
