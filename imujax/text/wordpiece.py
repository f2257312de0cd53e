"""BERT uncased tokenisation (basic tokenizer + greedy WordPiece), as ``BertTokenizer(do_lower_case=True)`` does it.

Basic step: drop control characters, map whitespace to spaces, put spaces around CJK characters, split on
whitespace, lower-case, strip accents (NFD, drop combining marks), split off every punctuation character.
WordPiece step: longest-match-first against the vocabulary with ``##`` continuations; a word that cannot be
covered (or is longer than 100 characters) becomes ``[UNK]``.
"""

from __future__ import annotations

import unicodedata

MAX_CHARS_PER_WORD = 100


def _is_whitespace(ch: str) -> bool:
    return ch in (" ", "\t", "\n", "\r") or unicodedata.category(ch) == "Zs"


def _is_control(ch: str) -> bool:
    if ch in ("\t", "\n", "\r"):
        return False
    return unicodedata.category(ch).startswith("C")


def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True  # ASCII symbols such as $ + ^ ` count as punctuation for BERT
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp: int) -> bool:
    return any(lo <= cp <= hi for lo, hi in ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF),
                                              (0x2A700, 0x2B73F), (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF),
                                              (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)))


def basic_tokenize(text: str) -> list[str]:
    chars = []
    for ch in text:
        cp = ord(ch)
        if cp == 0 or cp == 0xFFFD or _is_control(ch):
            continue
        if _is_cjk(cp):
            chars.append(f" {ch} ")
        else:
            chars.append(" " if _is_whitespace(ch) else ch)
    tokens = []
    for word in "".join(chars).split():
        word = "".join(c for c in unicodedata.normalize("NFD", word.lower()) if unicodedata.category(c) != "Mn")
        current = ""
        for ch in word:
            if _is_punctuation(ch):
                if current:
                    tokens.append(current)
                tokens.append(ch)
                current = ""
            else:
                current += ch
        if current:
            tokens.append(current)
    return tokens


def wordpiece(word: str, vocab: dict[str, int], unk: str = "[UNK]") -> list[str]:
    if len(word) > MAX_CHARS_PER_WORD:
        return [unk]
    pieces, start = [], 0
    while start < len(word):
        end, piece = len(word), None
        while start < end:
            candidate = ("##" if start > 0 else "") + word[start:end]
            if candidate in vocab:
                piece = candidate
                break
            end -= 1
        if piece is None:
            return [unk]
        pieces.append(piece)
        start = end
    return pieces


class WordPieceTokenizer:
    """Text -> ids ``[CLS] ... [SEP]`` (truncated to max_length) using a BERT ``vocab.txt``."""

    def __init__(self, vocab_path: str):
        with open(vocab_path, encoding="utf-8") as fh:
            self.vocab = {line.rstrip("\n"): i for i, line in enumerate(fh)}
        for special in ("[CLS]", "[SEP]", "[UNK]", "[PAD]"):
            if special not in self.vocab:
                raise ValueError(f"{vocab_path}: special token {special} is missing")

    def tokens(self, text: str) -> list[str]:
        return [p for w in basic_tokenize(text) for p in wordpiece(w, self.vocab)]

    def encode(self, text: str, max_length: int) -> list[int]:
        if max_length < 2:
            raise ValueError(f"max_length must be >= 2 (room for [CLS] and [SEP]), got {max_length}")
        body = [self.vocab[t] for t in self.tokens(text)][:max_length - 2]
        return [self.vocab["[CLS]"]] + body + [self.vocab["[SEP]"]]
