"""Arms: what a study compares. An arm is a fine-tuning method plus the settings that define it (pure).

    full        full fine-tuning
    lora_r16    LoRA, r 16, alpha 32 (the study's LoRA)
    lora_r64    LoRA, lora.r 64, lora.alpha 128
    dora_r16    LoRA with lora.use_dora: true
    rslora_r64  LoRA with lora.use_rslora: true, lora.r 64

A plan names its arms (`arms:` in tunebench.plan.spec) and one of them is the reference every other arm is
compared against (default: full fine-tuning). Without `arms:` a plan has one arm per method, named by it
(`lora`, `full`): the study as planned. An arm's settings are keys its method reads and only they (`lora.*`
for LoRA, nothing for full fine-tuning): what differs between arms is the method, never the data or the
training recipe; each arm's learning rate is swept on validation like any other grid key. A run records its
arm in `arm` (tunebench.config), which does not enter its id: the same computation is the same run, whatever
the plan calls it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tunebench.config import ARM_NAME_PATTERN, LoraConfig

ARM_NAME = re.compile(ARM_NAME_PATTERN)
# the keys that may define an arm, per method (sections included): what the method reads and the others do not
ARM_KEYS = {"lora": ("lora",), "full": ()}
DEFAULT_REFERENCE = "full"
FULL_LABEL = "full fine-tuning"


@dataclass(frozen=True)
class Arm:
    """One arm: its name, its method and the dotted keys that define it ({} for a method's plain arm)."""

    name: str
    method: str
    settings: dict[str, Any] = field(default_factory=dict)


def default_arms(methods: Iterable[str]) -> tuple[Arm, ...]:
    """One arm per method, named by it: a plan without `arms:`."""
    return tuple(Arm(m, m) for m in methods)


def arm_key_problem(key: str, method: str) -> str | None:
    """Why `key` cannot define an arm of `method` (None when it can)."""
    allowed = ARM_KEYS.get(method, ())
    if any(key == k or key.startswith(k + ".") for k in allowed):
        return None
    if not allowed:
        return f"{key}: a {method} arm has no settings of its own (only LoRA arms set lora.* keys)"
    return (f"{key}: an arm is defined by keys its method reads ({', '.join(k + '.*' for k in allowed)}); the "
            "data and the training recipe are the same for every arm (set them in `overrides`)")


def reference_of(arms: Iterable[Arm], reference: str | None = None) -> str:
    """The reference arm's name: `reference`, else `full` when there is such an arm, else the only full
    fine-tuning arm; ValueError when none of these picks exactly one arm."""
    arms = tuple(arms)
    names = [a.name for a in arms]
    if reference is not None:
        if reference not in names:
            raise ValueError(f"reference {reference!r} is not an arm ({', '.join(names)})")
        return reference
    if DEFAULT_REFERENCE in names:
        return DEFAULT_REFERENCE
    full = [a.name for a in arms if a.method == "full"]
    if len(full) == 1:
        return full[0]
    raise ValueError(f"name the reference arm (`reference:`): one of {', '.join(names)}")


def arm_label(method: str, lora: Mapping[str, Any] | None = None) -> str:
    """An arm's defining settings in words, from its run's config: `full fine-tuning`, `LoRA r=16`, `DoRA r=16`,
    `rsLoRA r=64`, with alpha when it is not twice r (`LoRA r=64 α=32`) and any other LoRA setting that
    differs from the study's default (dropout, target modules)."""
    if method != "lora":
        return FULL_LABEL
    defaults = LoraConfig().model_dump()
    cfg = {**defaults, **dict(lora or {})}
    parts = [f"{lora_family(cfg)} r={cfg['r']}"]
    if float(cfg["alpha"]) != 2 * float(cfg["r"]):
        parts.append(f"α={float(cfg['alpha']):g}")
    if float(cfg["dropout"]) != float(defaults["dropout"]):
        parts.append(f"dropout={float(cfg['dropout']):g}")
    if list(cfg["target_modules"]) != list(defaults["target_modules"]):
        parts.append("on " + "/".join(str(m).removesuffix("_proj") for m in cfg["target_modules"]))
    return " ".join(parts)


def lora_family(lora: Mapping[str, Any] | None) -> str:
    """LoRA, DoRA, rsLoRA or rsDoRA: the kind of adapter a LoRA config trains, whatever its rank."""
    lora = lora or {}
    kind = "DoRA" if lora.get("use_dora") else "LoRA"
    return "rs" + kind if lora.get("use_rslora") else kind


def run_arm(record: Mapping[str, Any]) -> str:
    """A run's arm from its metrics.json or config tree: `arm` when a plan named it, else its method."""
    config = record.get("config") if isinstance(record.get("config"), Mapping) else record
    return str(config.get("arm") or record.get("arm") or record.get("method") or config.get("method"))
