"""Synthetic examples: random token ids above the special ids, full length, no padding, random labels."""

from __future__ import annotations

import numpy as np
import torch


def special_ids_floor(tokenizer) -> int:
    """The lowest id above every special token (the tiny tokenizer's specials are 0-2, pad = eos = 2)."""
    return 1 + max(tokenizer.all_special_ids, default=-1)


def synthetic_features(n: int, length: int, vocab: int, low: int, num_labels: int, seed: int) -> list[dict]:
    """n full-length examples of random token ids in [low, vocab) with random labels (no padding)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(low, vocab, size=(n, length))
    labels = rng.integers(0, num_labels, size=n)
    return [{"input_ids": row.tolist(), "attention_mask": [1] * length, "labels": int(y), "length": length}
            for row, y in zip(ids, labels, strict=True)]


def synthetic_batch(n: int, length: int, vocab: int, low: int, num_labels: int, seed: int) -> dict:
    """One (n, length) batch of random tokens with balanced, shuffled labels (for the sanity checks)."""
    g = torch.Generator().manual_seed(seed)
    labels = (torch.arange(n) % num_labels)[torch.randperm(n, generator=g)]
    return {"input_ids": torch.randint(low, vocab, (n, length), generator=g),
            "attention_mask": torch.ones(n, length, dtype=torch.long), "labels": labels}
