"""Runs' test predictions lined up example by example (pure: predictions/test.jsonl frames in, arrays out).

Classification frames hold idx, label and prediction; SQuAD v2 frames id, f1 (official per-question F1, 0-1) and
has_answer (docs/results.md). The example-level tests of the comparison (report.compare) and of each arm's learned
test (report.learned) take the examples every run scored, in one fixed order, and average over an arm's runs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def common_examples(frames: list[pd.DataFrame], columns: set[str], key: str) -> list:
    """The examples (by `key`) every run's predictions hold, sorted, when all have `columns`; [] otherwise."""
    if not frames or not all(columns <= set(f.columns) for f in frames):
        return []
    common = set(frames[0][key])
    for f in frames[1:]:
        common &= set(f[key])
    return sorted(common)


def aligned(frames: list[pd.DataFrame], key: str, shared: list) -> list[pd.DataFrame]:
    """Each frame's rows for `shared`, in that order (one row per example)."""
    return [f.drop_duplicates(key).set_index(key).loc[shared] for f in frames]


def mean_correct(frames: list[pd.DataFrame], shared: list) -> np.ndarray:
    """Per example (classification, by idx): the share of the runs that got it right."""
    return np.mean([(g["prediction"].to_numpy() == g["label"].to_numpy()).astype(float)
                    for g in aligned(frames, "idx", shared)], axis=0)


def mean_f1(frames: list[pd.DataFrame], shared: list) -> np.ndarray:
    """Per question (SQuAD v2, by id): the official F1 (0-1) averaged over the runs."""
    return np.mean([g["f1"].to_numpy(float) for g in aligned(frames, "id", shared)], axis=0)
