"""Helpers shared by the plan tests: write a plan file, list a results folder's JSON files."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLANS_DIR = ROOT / "configs" / "plans"


def write_plan(folder: Path, text: str, name: str = "plan.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def json_files(root: Path) -> dict[str, object]:
    """Every *.json below root (relative path -> parsed content); raises if one is corrupt."""
    return {str(p.relative_to(root)): json.loads(p.read_text()) for p in sorted(root.rglob("*.json"))}


SMALL_TWO_STAGE = """
name: small
overrides: {{model.name: tiny, tracking.backend: none, output_dir: {out}}}
tasks: [mrpc, rte]
methods: [lora, full]
seeds: [42, 43]
grid:
  lora: {{training.learning_rate: [1.0e-4, 3.0e-4]}}
  full: {{training.full_finetune_learning_rate: [1.0e-5, 3.0e-5]}}
sweep: {{seeds: [42]}}
"""
