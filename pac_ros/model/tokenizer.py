"""Byte-level instruction tokenizer: no vocabulary file, nothing downloaded.

Token 0 is padding; byte b becomes token b + 1 (vocabulary of 257).
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

PAD = 0
VOCAB_SIZE = 257


def tokenize(text: str, max_len: int) -> np.ndarray:
    """One instruction -> int64[max_len] (normalised: stripped, lower-case; truncated)."""
    data = text.strip().lower().encode("utf-8")[:max_len]
    out = np.zeros(max_len, dtype=np.int64)
    out[: len(data)] = np.frombuffer(data, dtype=np.uint8).astype(np.int64) + 1
    return out


def tokenize_batch(texts: Iterable[str], max_len: int) -> np.ndarray:
    return np.stack([tokenize(t, max_len) for t in texts])


def detokenize(tokens: np.ndarray) -> str:
    tokens = np.asarray(tokens).reshape(-1)
    return bytes(int(t) - 1 for t in tokens if t != PAD).decode("utf-8", errors="replace")
