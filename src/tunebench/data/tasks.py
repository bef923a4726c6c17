"""The task table as the data package sees it: tunebench.tasks (below config, so that config can validate task
names against it) holds the entries; this module re-exports them.

Canonical record schemas, one per task family (every source -- builtin, local, hub -- produces these):
  classification: {"idx": int, "text_a": str, "text_b": str | None, "label": int}
  extractive_qa:  {"id": str, "title": str, "context": str, "question": str,
                   "answers": {"text": [str, ...], "answer_start": [int, ...]}}   (empty lists = unanswerable)
"""

from __future__ import annotations

from tunebench.tasks import TASKS, TaskSpec, get_task

__all__ = ["TASKS", "TaskSpec", "get_task"]
