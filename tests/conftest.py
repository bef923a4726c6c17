"""Shared test fixtures. Real assets live in ../shared (beside the repository), never copied into it."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared_assets import SHARED

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The official GLUE TSVs and SQuAD v2 JSON files (../shared/data); skips when absent."""
    path = SHARED / "data"
    if not (path / "glue").is_dir() or not (path / "squad_v2").is_dir():
        pytest.skip(f"{path}: shared data not available")
    return path


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread: the 2 shared CPU cores are oversubscribed otherwise (a 64 x 64 SVD took 100x longer)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
