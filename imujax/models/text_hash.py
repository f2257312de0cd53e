"""Deterministic hashed bag-of-words text embedder: a stand-in for the frozen CLIP / clip4clip text towers.

The upstream systems embed narrations with a frozen CLIP text tower whose weights are not shipped here. For the
synthetic demos and tests, each lower-cased word (and each adjacent word pair) maps through a stable hash
(BLAKE2b, independent of PYTHONHASHSEED) to a fixed pseudo-random Gaussian vector; a text is the L2-normalised sum
of its token vectors. Equal texts give equal embeddings, texts sharing words are close, and nothing is learned, so
it plays the role of a frozen tower. It carries no semantics beyond word overlap: it is not a CLIP replacement.
"""

from __future__ import annotations

import functools
import hashlib
import re

import numpy as np

_WORD = re.compile(r"[a-z0-9]+")


def tokens(text: str | bytes) -> list[str]:
    """Lower-cased alphanumeric words followed by adjacent word pairs ('a_b')."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    words = _WORD.findall(str(text).lower())
    return words + [f"{a}_{b}" for a, b in zip(words, words[1:])]


@functools.lru_cache(maxsize=65536)
def token_vector(token: str, dim: int, seed: int = 0) -> np.ndarray:
    """Fixed N(0, 1/dim) vector of one token; the same token always gives the same vector."""
    digest = hashlib.blake2b(f"{seed}\x00{token}".encode(), digest_size=8).digest()
    rng = np.random.default_rng(int.from_bytes(digest, "little"))
    vector = (rng.standard_normal(dim) / np.sqrt(dim)).astype(np.float32)
    vector.setflags(write=False)
    return vector


def embed_text(text: str | bytes, dim: int = 512, seed: int = 0) -> np.ndarray:
    """float32 [dim], unit norm (all zeros for a text without words)."""
    if dim < 1:
        raise ValueError(f"embed_text: dim must be positive, got {dim}")
    total = np.zeros(dim, np.float32)
    for token in tokens(text):
        total += token_vector(token, dim, seed)
    norm = float(np.linalg.norm(total))
    return total / norm if norm > 0 else total


def embed_texts(texts, dim: int = 512, seed: int = 0) -> np.ndarray:
    """[N, dim] for a sequence of texts."""
    return np.stack([embed_text(t, dim, seed) for t in texts]) if len(texts) else np.zeros((0, dim), np.float32)
