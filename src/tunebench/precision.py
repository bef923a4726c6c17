"""Numeric precision: one policy for both arms of the study, so "LoRA matches full fine-tuning" is never an
artefact of one arm training in a lower precision than the other.

`training.precision` takes the conventional names (PyTorch Lightning's):

| name         | trainable weights | optimizer state   | compute         | frozen weights (`model.dtype`)  |
|--------------|-------------------|-------------------|-----------------|---------------------------------|
| `32-true`    | fp32              | fp32              | fp32            | fp32                            |
| `bf16-mixed` | fp32 (master)     | fp32              | bf16 (autocast) | fp32, or bf16 if model.dtype=bfloat16 |
| `bf16-true`  | bf16              | bf16 (compensated) | bf16           | bf16                            |

bf16-true trains with an AdamW that compensates for bf16 rounding (Kahan summation from torch-optimi, or
stochastic rounding from torchao) and refuses to run when neither is installed.

`auto` is `bf16-mixed` on a CUDA GPU and `32-true` on a CPU (bf16 matmuls are 20-40x slower on CPUs).

Why full fine-tuning needs fp32 master weights: a bf16 weight of magnitude 0.02 (Llama's init scale) has a
spacing of 2^-13 ~ 1.2e-4 between representable values, so an Adam update of lr ~ 1e-5 is rounded away and
the weight never moves. PEFT keeps LoRA's adapters in fp32, so bf16 full fine-tuning against fp32 LoRA would
handicap full fine-tuning. Under every policy here both arms keep every trainable tensor (LoRA's adapters,
the task head in `modules_to_save`, or every weight for full fine-tuning) in the same dtype.

`model.dtype` is the storage dtype of the *frozen* weights only (LoRA's base model; full fine-tuning has
none): `auto` = the trainable dtype (both arms then start from bit-identical weights and run the same
forward pass), `bfloat16` under `bf16-mixed` halves the frozen weights' memory. `float16` is refused: fp16
training needs loss scaling, which this study does not use.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from tunebench.config import precision_conflict
from tunebench.errors import TunebenchError

PRECISIONS = ("bf16-mixed", "32-true", "bf16-true")


@dataclass(frozen=True)
class PrecisionPolicy:
    """The resolved precision of a run: what every trainable tensor, the optimizer state and the compute use."""

    name: str                       # one of PRECISIONS
    trainable_dtype: torch.dtype
    frozen_dtype: torch.dtype
    compute_dtype: torch.dtype
    optimizer_state_dtype: torch.dtype

    @property
    def autocast(self) -> bool:
        """bf16 autocast over fp32 weights (the Trainer's `bf16=True`)."""
        return self.name == "bf16-mixed"

    def autocast_context(self, device: str):
        """The forward pass's context outside the Trainer (sanity checks, benchmarks)."""
        if not self.autocast:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device, dtype=self.compute_dtype)

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "trainable_dtype": dtype_name(self.trainable_dtype),
                "frozen_dtype": dtype_name(self.frozen_dtype), "compute_dtype": dtype_name(self.compute_dtype),
                "optimizer_state_dtype": dtype_name(self.optimizer_state_dtype)}


def dtype_name(dtype: torch.dtype | None) -> str | None:
    return None if dtype is None else str(dtype).removeprefix("torch.")


def resolve_precision(name: str, device: str) -> str:
    """`auto` -> bf16-mixed on CUDA, 32-true elsewhere; any other name is returned as it is."""
    if name == "auto":
        return "bf16-mixed" if device == "cuda" else "32-true"
    if name not in PRECISIONS:
        raise TunebenchError(f"training.precision = {name!r}: allowed: auto, {', '.join(PRECISIONS)}")
    return name


def build_policy(precision: str, model_dtype: str, device: str) -> PrecisionPolicy:
    """The policy for `training.precision` and `model.dtype` on `device` (pure: nothing is checked against the
    machine here, so a CUDA policy can be built and tested on a CPU; see check_supported)."""
    name = resolve_precision(precision, device)
    problem = precision_conflict(name, model_dtype, device if precision == "auto" else None)
    if problem:
        raise TunebenchError(problem)
    bf16, fp32 = torch.bfloat16, torch.float32
    if name == "32-true":
        return PrecisionPolicy(name, fp32, fp32, fp32, fp32)
    if name == "bf16-mixed":
        return PrecisionPolicy(name, fp32, bf16 if model_dtype == "bfloat16" else fp32, bf16, fp32)
    return PrecisionPolicy(name, bf16, bf16, bf16, bf16)


def resolve_policy(cfg, device: str) -> PrecisionPolicy:
    """The policy of a config (tunebench.config.Config) on a device."""
    return build_policy(cfg.training.precision, cfg.model.dtype, device)


def check_supported(policy: PrecisionPolicy, device: str, optim: str) -> None:
    """One clear line when this machine cannot train under the policy (raised before anything is loaded)."""
    if policy.compute_dtype == torch.bfloat16 and not bf16_supported(device):
        where = "this GPU (bf16 needs compute capability 8.0+)" if device == "cuda" else "this CPU"
        raise TunebenchError(f"training.precision={policy.name}: bf16 is not supported on {where}; "
                             f"use training.precision=32-true")
    if policy.name == "bf16-true":
        if compensating_optimizer() is None:
            raise TunebenchError("training.precision=bf16-true needs an optimizer that compensates for bf16 "
                                 "rounding: pip install torch-optimi (Kahan summation) or torchao (stochastic "
                                 "rounding); or use training.precision=bf16-mixed")
        if optim not in ("adamw_torch", "adamw_torch_fused"):
            raise TunebenchError(f"training.optim={optim} cannot be combined with training.precision=bf16-true "
                                 "(it uses AdamW with Kahan summation or stochastic rounding)")


def bf16_supported(device: str) -> bool:
    if device == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def compensating_optimizer() -> str | None:
    """The installed AdamW that compensates for bf16 rounding: "optimi" (Kahan summation), "torchao"
    (stochastic rounding), or None."""
    if importlib.util.find_spec("optimi") is not None:
        return "optimi"
    if importlib.util.find_spec("torchao") is not None:
        return "torchao"
    return None


def optimizer_cls_and_kwargs(policy: PrecisionPolicy, lr: float, betas: tuple[float, float], eps: float,
                             weight_decay: float) -> tuple[type, dict] | None:
    """The optimizer class and keyword arguments bf16-true trains with (for the Trainer's
    `optimizer_cls_and_kwargs`); None for the other policies (the Trainer builds `training.optim`)."""
    if policy.name != "bf16-true":
        return None
    which = compensating_optimizer()
    common = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay}
    if which == "optimi":
        import optimi

        return optimi.AdamW, {**common, "kahan_sum": True}
    if which == "torchao":
        from torchao.optim import AdamW

        return AdamW, {**common, "bf16_stochastic_round": True}
    raise TunebenchError("training.precision=bf16-true needs torch-optimi or torchao (see check_supported)")


# ---------------------------------------------------------------- applying and reading a policy


def apply_policy(model: torch.nn.Module, policy: PrecisionPolicy) -> torch.nn.Module:
    """Cast every trainable parameter to the policy's trainable dtype and every frozen floating parameter to
    its frozen dtype, in place (call after the method transform: it decides which parameters train)."""
    for p in model.parameters():
        if not p.is_floating_point():
            continue
        want = policy.trainable_dtype if p.requires_grad else policy.frozen_dtype
        if p.dtype != want:
            p.data = p.data.to(want)
    return model


def trainable_dtypes(model: torch.nn.Module) -> set[torch.dtype]:
    return {p.dtype for p in model.parameters() if p.requires_grad}


def optimizer_state_dtypes(optimizer: torch.optim.Optimizer) -> set[torch.dtype]:
    """Dtypes of the optimizer's floating per-parameter state (moments, compensation buffers), the step
    counters left out. Empty before the first step."""
    out = set()
    for state in optimizer.state.values():
        for key, v in state.items():
            if torch.is_tensor(v) and v.is_floating_point() and v.dim() > 0 and key != "step":
                out.add(v.dtype)
    return out


def single(dtypes: Iterable[torch.dtype]) -> str | None:
    """The one dtype of a set as a name; "mixed: a, b" when there are several; None when empty."""
    names = sorted(dtype_name(d) for d in set(dtypes))
    if not names:
        return None
    return names[0] if len(names) == 1 else f"mixed: {', '.join(names)}"


class ComputeDtypeProbe:
    """Records the dtype of a linear layer's output in training mode: the dtype the matmuls run in (bf16 under
    autocast or with bf16 weights, fp32 otherwise). The first linear whose weight trains (LoRA: an adapter;
    full: q_proj), so a trained tensor left in another dtype shows. Removes its hook after the first call;
    None when no training step ran (a run resumed at its last step)."""

    def __init__(self, model: torch.nn.Module):
        self.dtype: torch.dtype | None = None
        linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
        linear = next((m for m in linears if m.weight.requires_grad), linears[0] if linears else None)
        self._handle = linear.register_forward_hook(self._hook) if linear is not None else None

    def _hook(self, module, inputs, output) -> None:
        if module.training and torch.is_tensor(output):
            self.dtype = output.dtype
            self.remove()

    def remove(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


def measured_precision(policy: PrecisionPolicy, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                       compute_dtype: torch.dtype | None) -> dict:
    """What a run actually trained with (recorded in metrics.json): the policy's name and the measured
    trainable-parameter, optimizer-state and compute dtypes."""
    return {"name": policy.name,
            "trainable_dtype": single(trainable_dtypes(model)),
            "optimizer_state_dtype": single(optimizer_state_dtypes(optimizer)) if optimizer else None,
            "compute_dtype": dtype_name(compute_dtype),
            "frozen_dtype": single({p.dtype for p in model.parameters() if not p.requires_grad})}
