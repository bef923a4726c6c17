"""LoRA versus full fine-tuning is a transform of the model; nothing else in the pipeline differs.

- full: every weight trainable.
- lora: PEFT LoRA on the configured projections; the new task head (`score` / `qa_outputs`) is trained and
  saved with the adapter (`modules_to_save`), otherwise a reloaded adapter would meet a random head.
"""

from __future__ import annotations

import warnings

import torch
from peft import LoraConfig as PeftLoraConfig
from peft import TaskType, get_peft_model

from tunebench.config import Config
from tunebench.data.tasks import TaskSpec
from tunebench.errors import TunebenchError


def head_name(task: TaskSpec) -> str:
    return "qa_outputs" if task.is_qa else "score"


def apply_method(model: torch.nn.Module, cfg: Config, task: TaskSpec) -> torch.nn.Module:
    """Return the model prepared for cfg.method. Call after seeding: LoRA A matrices are random."""
    if cfg.method == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    check_target_modules(model, cfg.lora.target_modules)
    with warnings.catch_warnings():   # PEFT 0.21 reads transformers 5's deprecated `is_gradient_checkpointing`
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, build_lora_config(cfg, task))


def check_target_modules(model: torch.nn.Module, target_modules: list[str]) -> None:
    """Every configured target names a linear layer of the model (PEFT only fails when none matches)."""
    found = {name.rsplit(".", 1)[-1] for name in wrapped_linears(model, target_modules)}
    missing = [t for t in target_modules if t not in found]
    if missing:
        available = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                            if isinstance(m, torch.nn.Linear)})
        raise TunebenchError(f"lora.target_modules: {missing} match no linear layer of the model "
                             f"(available: {', '.join(available)})")


def build_lora_config(cfg: Config, task: TaskSpec) -> PeftLoraConfig:
    lc = cfg.lora
    return PeftLoraConfig(
        task_type=TaskType.QUESTION_ANS if task.is_qa else TaskType.SEQ_CLS,
        r=lc.r,
        lora_alpha=lc.alpha,
        lora_dropout=lc.dropout,
        target_modules=list(lc.target_modules),
        use_rslora=lc.use_rslora,
        use_dora=lc.use_dora,
        modules_to_save=[head_name(task)],
        bias="none",
    )


def count_parameters(model: torch.nn.Module) -> dict:
    """Trainable and total parameters of the model as trained (adapters included, duplicates excluded)."""
    seen: set[int] = set()
    trainable = total = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return {"trainable": trainable, "total": total, "trainable_share": trainable / total if total else 0.0}


def wrapped_linears(model: torch.nn.Module, target_modules: list[str]) -> dict[str, torch.nn.Linear]:
    """The base model's linears that LoRA should wrap: name -> module (before the transform)."""
    targets = set(target_modules)
    return {
        name: m for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and name.rsplit(".", 1)[-1] in targets
    }


def expected_lora_trainable(model: torch.nn.Module, cfg: Config, task: TaskSpec) -> int:
    """Sum over wrapped linears of r * (d_in + d_out) (config.LoraConfig.added_params: LoRA paper, section 4;
    DoRA adds one magnitude vector of size d_out), plus the head."""
    total = sum(cfg.lora.added_params(m.in_features, m.out_features)
                for m in wrapped_linears(model, cfg.lora.target_modules).values())
    head = getattr(model, head_name(task))
    return total + sum(p.numel() for p in head.parameters())
