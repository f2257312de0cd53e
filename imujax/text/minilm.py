"""A numpy BERT encoder (post-norm, exact GELU) reading HF ``BertModel`` safetensors with the torch-free reader.

Used for sentence-transformers/all-MiniLM-L6-v2 (6 layers, 384 wide, 12 heads, LayerNorm eps 1e-12): token states
are ``last_hidden_state``; the sentence embedding is the masked mean of the token states, L2-normalised (the model's
Pooling + Normalize modules). Frozen, so it runs once per string on the host and the results are cached.
"""

from __future__ import annotations

import json
import os

import numpy as np
from scipy import special

from imujax.io import tensor_files


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = np.square(x - mean).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


class BertEncoder:
    """``weights``: HF BertModel state dict (numpy); ``config``: its config.json dict."""

    def __init__(self, weights: dict[str, np.ndarray], config: dict):
        for field in ("num_hidden_layers", "num_attention_heads", "hidden_size", "layer_norm_eps"):
            if field not in config:
                raise ValueError(f"BERT config: field {field!r} is missing")
        if config.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"BERT config: hidden_act={config['hidden_act']!r}; only exact 'gelu' is implemented")
        self.w = {k: np.asarray(v, np.float32) for k, v in weights.items() if not k.endswith("position_ids")}
        self.layers, self.heads = config["num_hidden_layers"], config["num_attention_heads"]
        self.eps = float(config["layer_norm_eps"])
        self.width = config["hidden_size"]

    @classmethod
    def from_dir(cls, model_dir: str) -> "BertEncoder":
        cfg_path, st_path = os.path.join(model_dir, "config.json"), os.path.join(model_dir, "model.safetensors")
        for path in (cfg_path, st_path):
            if not os.path.exists(path):
                raise FileNotFoundError(f"BERT model directory {model_dir}: {os.path.basename(path)} is missing")
        with open(cfg_path) as fh:
            config = json.load(fh)
        weights = dict(tensor_files.load_safetensors(st_path))
        return cls({k.removeprefix("bert."): v for k, v in weights.items()}, config)

    def _linear(self, x, name):
        return x @ self.w[f"{name}.weight"].T + self.w[f"{name}.bias"]

    def __call__(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """ids, mask [N, S] -> last_hidden_state [N, S, width] (float32)."""
        w = self.w
        n, s = ids.shape
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][None, :s]
        x = x + w["embeddings.token_type_embeddings.weight"][0]
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps)
        bias = np.where(mask.astype(bool), 0.0, np.finfo(np.float32).min).astype(np.float32)[:, None, None, :]
        hd = self.width // self.heads
        split = lambda t: t.reshape(n, s, self.heads, hd).transpose(0, 2, 1, 3)
        for i in range(self.layers):
            p = f"encoder.layer.{i}"
            q, k, v = (split(self._linear(x, f"{p}.attention.self.{m}")) for m in ("query", "key", "value"))
            scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hd) + bias
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            ctx = (scores / scores.sum(-1, keepdims=True)) @ v
            ctx = ctx.transpose(0, 2, 1, 3).reshape(n, s, self.width)
            x = _layer_norm(self._linear(ctx, f"{p}.attention.output.dense") + x,
                            w[f"{p}.attention.output.LayerNorm.weight"], w[f"{p}.attention.output.LayerNorm.bias"],
                            self.eps)
            h = self._linear(x, f"{p}.intermediate.dense")
            h = 0.5 * h * (1.0 + special.erf(h / np.sqrt(2.0)))
            x = _layer_norm(self._linear(h, f"{p}.output.dense") + x, w[f"{p}.output.LayerNorm.weight"],
                            w[f"{p}.output.LayerNorm.bias"], self.eps)
        return x.astype(np.float32)


def mean_pool_normalize(states: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = mask.astype(np.float32)[..., None]
    pooled = (states * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    return pooled / np.maximum(np.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)
