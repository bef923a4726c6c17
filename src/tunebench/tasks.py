"""The task table (run_glue's `task_to_keys` style): one entry per task holds every fact tunebench keeps about it.

The table is the one list of task names: config validates `task` (and a plan its `tasks`) against it, the data
sources read their files and hub datasets with it, the plan's cost model reads its lengths and split sizes, and
the report its metrics and baselines. Adding a GLUE task with accuracy / F1 metrics is one entry here (plus its
tests); what an entry cannot carry -- a builtin synthetic generator (tunebench.data.builtin), a metric other
than accuracy / F1 / macro F1 (tunebench.metrics.classification) -- is code.

It sits below config (tests/test_layers.py), so it imports nothing of tunebench but errors. The canonical
record schemas every source produces are in tunebench.data.tasks, which re-exports this table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from tunebench.errors import TunebenchError


@dataclass(frozen=True)
class TaskSpec:
    name: str
    family: Literal["classification", "extractive_qa"]
    label_names: tuple[str, ...]          # classification only; index = label id
    metrics: tuple[str, ...]              # reported metrics, primary first
    primary_metric: str                   # used for model selection on the validation split
    official_counts: dict[str, int]       # official split sizes (GLUE dev / SQuAD dev are our test split)
    hub_id: str                           # datasets hub id for `data download`
    hub_config: str | None
    # mean tokens per training example under the LLaMA tokenizer, special tokens included (plan.cost): mean
    # words per example in the official train file (SQuAD: the dev file, context + question) x 1.35 tokens per
    # word (SentencePiece LLaMA on English; chars / 4 gives the same within 10%)
    mean_tokens: int
    hub_text_fields: tuple[str, ...] = () # hub columns holding text_a, text_b (classification)
    raw_text_fields: tuple[str, ...] = () # GLUE TSV columns holding text_a, text_b
    raw_label_field: str = ""
    raw_dir: str = ""                     # GLUE folder name under data.glue_dir (official glue_data layout)
    raw_label_values: tuple[str, ...] = ()  # label strings in the raw TSV; index = label id
    # official unanswerable-question counts (SQuAD v2 only): train 43,498 of 130,319; dev 5,945 of 11,873
    official_unanswerable: dict[str, int] = field(default_factory=dict)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def is_qa(self) -> bool:
        return self.family == "extractive_qa"

    @property
    def points_scale(self) -> float:
        """Factor that turns the task's metrics into points (0-100): SQuAD's official ones already are."""
        return 1.0 if self.is_qa else 100.0


_SPECS = (
    TaskSpec(
        name="sst2", family="classification", label_names=("negative", "positive"),
        metrics=("accuracy", "macro_f1"), primary_metric="accuracy",
        official_counts={"train": 67_349, "test": 872},
        hub_id="nyu-mll/glue", hub_config="sst2",
        mean_tokens=15,                   # 9.4 words
        hub_text_fields=("sentence",),
        raw_text_fields=("sentence",), raw_label_field="label",
        raw_dir="SST-2", raw_label_values=("0", "1"),
    ),
    TaskSpec(
        name="mrpc", family="classification", label_names=("not_equivalent", "equivalent"),
        # GLUE reports MRPC as accuracy and F1 of the positive (paraphrase) class.
        metrics=("f1", "accuracy"), primary_metric="f1",
        official_counts={"train": 3_668, "test": 408},
        hub_id="nyu-mll/glue", hub_config="mrpc",
        mean_tokens=62,                   # 43.9 words, both sentences
        hub_text_fields=("sentence1", "sentence2"),
        raw_text_fields=("#1 String", "#2 String"), raw_label_field="Quality",
        raw_dir="MRPC", raw_label_values=("0", "1"),
    ),
    TaskSpec(
        name="rte", family="classification", label_names=("entailment", "not_entailment"),
        metrics=("accuracy", "macro_f1"), primary_metric="accuracy",
        official_counts={"train": 2_490, "test": 277},
        hub_id="nyu-mll/glue", hub_config="rte",
        mean_tokens=77,                   # 52.4 words
        hub_text_fields=("sentence1", "sentence2"),
        raw_text_fields=("sentence1", "sentence2"), raw_label_field="label",
        # GLUE's RTE writes labels as words; the hub's ints use the same order (0 = entailment).
        raw_dir="RTE", raw_label_values=("entailment", "not_entailment"),
    ),
    TaskSpec(
        name="squad_v2", family="extractive_qa", label_names=(),
        metrics=("f1", "exact", "HasAns_f1", "HasAns_exact", "NoAns_f1", "NoAns_exact"), primary_metric="f1",
        official_counts={"train": 130_319, "test": 11_873},
        hub_id="rajpurkar/squad_v2", hub_config=None,
        mean_tokens=200,                  # 137.9 words, context + question
        official_unanswerable={"train": 43_498, "test": 5_945},
    ),
)
# The one list of tasks, in the order tables and reports show them. Read it at call time (never copy it at import):
# every consumer then sees the same entries, a task added here included.
TASKS: dict[str, TaskSpec] = {spec.name: spec for spec in _SPECS}


def get_task(name: str) -> TaskSpec:
    try:
        return TASKS[name]
    except KeyError:
        raise TunebenchError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}") from None


def task_names() -> tuple[str, ...]:
    """The tasks' names, in the table's order (CLI choices, a plan's default tasks)."""
    return tuple(TASKS)


def qa_task_names() -> tuple[str, ...]:
    """The extractive-QA tasks (SQuAD v2): the ones read from data.squad_dir, with the QA breakdown in reports."""
    return tuple(name for name, spec in TASKS.items() if spec.is_qa)
