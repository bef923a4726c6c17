"""The model built on the device itself: train.build_model (and the base model before the method transform)
with the random weights initialized on the GPU."""

from __future__ import annotations

import contextlib

import torch

from tunebench.config import Config
from tunebench.data.tasks import TaskSpec


def _device_context(device: str):
    return torch.device(device) if device == "cuda" else contextlib.nullcontext()


def build_on_device(cfg: Config, task: TaskSpec, tokenizer, device: str, policy) -> torch.nn.Module:
    """train.build_model, with the random weights created on the GPU itself (a torch.device context): the same
    function and seeds, without initializing 1.3B parameters on the CPU and copying them over."""
    from tunebench.train import build_model

    with _device_context(device):
        return build_model(cfg, task, tokenizer, device, policy)


def load_base_on_device(cfg: Config, task: TaskSpec, tokenizer, device: str, policy) -> torch.nn.Module:
    """The model before the method transform, loaded as train.build_model loads it (seeded, the policy's
    frozen-weight dtype): what sanity.overfit_batch takes."""
    from transformers import set_seed

    from tunebench.model import load_model

    with _device_context(device):
        set_seed(cfg.training.seed)
        return load_model(cfg, task, tokenizer, device, dtype=policy.frozen_dtype)
