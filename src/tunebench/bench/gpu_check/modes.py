"""The two kinds of check, the GPU check (`GPU`) and the CPU smoke run (`SMOKE`): sizes, step counts and time
budgets, the parts in the order they run, and the study model's shapes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tunebench.config import ModelConfig, TinyModelConfig

SYNTHETIC_TASK = "rte"                      # the study's task with the longest examples; 2 labels
STUDY_MODEL = ModelConfig().name            # princeton-nlp/Sheared-LLaMA-1.3B
PARTS = ("sdpa", "sanity", "throughput", "task_lengths", "real_run", "batch_search", "variants", "torch_compile")


def study_shape() -> dict[str, int]:
    """The study model's shapes as `model.tiny.*` keys (from plan.cost.KNOWN_MODELS, the one place they live)."""
    from tunebench.plan.cost import KNOWN_MODELS

    known = KNOWN_MODELS[STUDY_MODEL]
    return {k: known[k] for k in TinyModelConfig.model_fields if k in known}


@dataclass(frozen=True)
class Mode:
    """The sizes, step counts and time budgets of one kind of check (the GPU check or the CPU smoke run)."""

    name: str                                   # "gpu" | "smoke"
    tiny: dict[str, Any]                        # model.tiny.* of the synthetic model
    max_length: int | None                      # None: the config's model.max_length (the study's 512)
    precision: str                              # training.precision of every part
    sanity_examples: int
    sanity_len: int                             # tokens per overfitting example
    overfit_steps: int                          # the cap on overfitting steps (per learning rate)
    overfit_lrs: dict[str, tuple[float, ...]]   # tried in order until one reaches the loss target
    loss_target: float
    warmup_steps: int                           # untimed steps before the study-batch measurement
    timed_steps: int
    search_warmup: int                          # the same for each batch of the search and each variant
    search_timed: int
    batch_cap: int
    run_steps: int                              # the real run's training.max_steps
    run_eval_steps: int
    run_overrides: dict[str, Any]               # more settings of the real run (smoke: small builtin splits)
    total_budget_s: float
    part_budget_s: dict[str, float]             # adding up to at most total_budget_s; the last part gets the rest
    min_start_s: dict[str, float]               # a part does not start with less than this left
    compile_in_child: bool                      # False (smoke): the child runs without torch.compile
    compile_methods: tuple[str, ...]            # in this order, while the budget lasts (the cheaper first)
    sdpa_iters: int


GPU = Mode(
    name="gpu", tiny=study_shape(), max_length=None, precision="bf16-mixed",
    sanity_examples=32, sanity_len=128, overfit_steps=40,
    overfit_lrs={"lora": (1e-3, 3e-4), "full": (1e-4, 3e-5)}, loss_target=0.05,
    warmup_steps=5, timed_steps=20, search_warmup=2, search_timed=4, batch_cap=64,
    run_steps=200, run_eval_steps=50, run_overrides={},
    total_budget_s=255.0,
    part_budget_s={"sdpa": 10, "sanity": 35, "throughput": 30, "task_lengths": 25, "real_run": 60,
                   "batch_search": 30, "variants": 25, "torch_compile": 40},
    min_start_s={"sdpa": 2, "sanity": 10, "throughput": 10, "task_lengths": 8, "real_run": 20, "batch_search": 10,
                 "variants": 8, "torch_compile": 30},
    compile_in_child=True, compile_methods=("lora", "full"), sdpa_iters=10,
)


SMOKE = Mode(
    name="smoke", tiny={"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                        "intermediate_size": 128, "vocab_size": None},
    max_length=32, precision="32-true",
    sanity_examples=32, sanity_len=16, overfit_steps=60,
    overfit_lrs={"lora": (1e-2, 3e-3), "full": (3e-3, 1e-3)}, loss_target=0.05,
    warmup_steps=1, timed_steps=3, search_warmup=1, search_timed=2, batch_cap=8,
    run_steps=10, run_eval_steps=5,
    run_overrides={"model.max_length": 64, "data.builtin_train_size": 120, "data.builtin_test_size": 40,
                   "data.validation_size": 24, "training.eval_train_examples": 16},
    total_budget_s=360.0,
    part_budget_s={"sdpa": 20, "sanity": 60, "throughput": 40, "task_lengths": 30, "real_run": 90,
                   "batch_search": 20, "variants": 40, "torch_compile": 60},
    min_start_s={p: 1 for p in PARTS},
    compile_in_child=False, compile_methods=("lora",), sdpa_iters=2,
)
