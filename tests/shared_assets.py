"""Where the real assets the tests read live: ../shared beside the repository (never copied into it)."""

from __future__ import annotations

from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
STORIES = SHARED / "models" / "stories260K"   # a real 260K-parameter LLaMA checkpoint (no pad token)
