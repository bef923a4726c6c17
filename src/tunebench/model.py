"""Model and tokenizer loading: a hub id or local HF folder, a GGUF file, or a tiny random LLaMA.

Traps handled here (each verified on transformers 5.x):
- Llama checkpoints have no pad token: we set one (eos) on the tokenizer and the model config.
- `LlamaForQuestionAnswering` keeps `base_model_prefix = "transformer"` for backward compatibility, so loading
  it from a causal-LM checkpoint (keys `model.*`) silently re-initializes the whole backbone. We use a
  subclass whose backbone lives under `model`, and verify that every base weight came from the checkpoint.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    LlamaConfig,
    LlamaForSequenceClassification,
    PreTrainedTokenizerFast,
)
from transformers.modeling_layers import GenericForQuestionAnswering
from transformers.models.llama.modeling_llama import LlamaPreTrainedModel

from tunebench.config import Config
from tunebench.data.tasks import TaskSpec
from tunebench.errors import TunebenchError

TINY = "tiny"
HEAD_PREFIXES = ("score.", "qa_outputs.")  # the only weights allowed to be new
IGNORED_CHECKPOINT_KEYS = ("lm_head.",)     # the causal-LM head is not part of a task model


class CausalLlamaForQuestionAnswering(GenericForQuestionAnswering, LlamaPreTrainedModel):
    """Extractive QA head on a LLaMA backbone stored under `model` (as in causal-LM checkpoints)."""

    base_model_prefix = "model"
    # The class name must end in ForQuestionAnswering: transformers derives the loss and the Trainer's label
    # names (start_positions, end_positions) from it.


@dataclass
class LoadReport:
    """What a checkpoint's loading info says (check_loading_info). Internal to load_model, which acts on
    `missing_base_keys` only (it raises on any) and returns the model alone, not this report."""

    source: str                               # "checkpoint" | "gguf"
    new_keys: list[str] = field(default_factory=list)   # head weights initialized fresh
    missing_base_keys: list[str] = field(default_factory=list)


@contextlib.contextmanager
def quiet_transformers():
    """No load-report tables or progress bars: tunebench checks the loading itself (check_loading_info)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        hf_logging.enable_progress_bar()


# ---------------------------------------------------------------- device and dtype


def resolve_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(cfg: Config, device: str | None = None) -> torch.dtype:
    """The dtype the weights are loaded in: the precision policy's frozen-weight dtype (tunebench.precision;
    fp32 under 32-true and bf16-mixed unless model.dtype=bfloat16, bf16 under bf16-true). Trainable weights
    are cast to the policy's trainable dtype after the method transform (train.build_model)."""
    from tunebench.precision import resolve_policy

    return resolve_policy(cfg, device or resolve_device()).frozen_dtype


# ---------------------------------------------------------------- tokenizer


def load_tokenizer(cfg: Config):
    if cfg.model.name == TINY:
        tok = build_tiny_tokenizer()
    else:
        tok = from_pretrained_checked(AutoTokenizer, cfg, {})
    ensure_pad_token(tok)
    tok.padding_side = "right"
    return tok


def build_tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer over the builtin tasks' vocabulary: no download, exact character offsets.

    Like every Llama tokenizer it has bos/eos/unk but no pad token, so the tiny path exercises the same fix.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    from tunebench.data.builtin import VOCABULARY

    specials = ["<unk>", "<s>", "</s>"]
    vocab = {tok: i for i, tok in enumerate(specials + [w for w in VOCABULARY if w not in specials])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
    )
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def ensure_pad_token(tokenizer) -> None:
    """Llama has no pad token; reuse eos (never appended to classification inputs, so the classifier's
    "rightmost non-pad token" is the last real token)."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token


# ---------------------------------------------------------------- model


def load_model(cfg: Config, task: TaskSpec, tokenizer, device: str | None = None, dtype: torch.dtype | None = None):
    """The task model (classification or span-QA head) on `device`, every weight in `dtype` (default: the
    precision policy's frozen-weight dtype for that device, resolve_dtype).

    Raises TunebenchError when any base weight is missing from the checkpoint.
    """
    device = device or resolve_device()
    dtype = dtype or resolve_dtype(cfg, device)
    head_kwargs = _head_kwargs(task)
    cls = CausalLlamaForQuestionAnswering if task.is_qa else AutoModelForSequenceClassification
    if cfg.model.name == TINY:
        model = _build_tiny(cfg, task, tokenizer)           # random init: nothing loaded, nothing to check
    else:
        kwargs = dict(head_kwargs, dtype=dtype, attn_implementation=cfg.model.attn_implementation,
                      output_loading_info=True)
        model, info = from_pretrained_checked(cls, cfg, kwargs)
        report = check_loading_info(info, source="gguf" if cfg.model.gguf_file else "checkpoint")
        if report.missing_base_keys:
            shown = ", ".join(report.missing_base_keys[:8])
            more = len(report.missing_base_keys) - 8
            raise TunebenchError(
                f"model {cfg.model.name}: {len(report.missing_base_keys)} base weights missing from the checkpoint "
                f"(would be randomly initialized): {shown}{f' and {more} more' if more > 0 else ''}"
            )
    model.config.pad_token_id = tokenizer.pad_token_id
    return model.to(device=device, dtype=dtype)


def _head_kwargs(task: TaskSpec) -> dict:
    if task.is_qa:
        return {}
    return {
        "num_labels": task.num_labels,
        "id2label": dict(enumerate(task.label_names)),
        "label2id": {n: i for i, n in enumerate(task.label_names)},
    }


def _build_tiny(cfg: Config, task: TaskSpec, tokenizer):
    t = cfg.model.tiny
    config = LlamaConfig(
        vocab_size=max(t.vocab_size or 0, len(tokenizer)), hidden_size=t.hidden_size,
        intermediate_size=t.intermediate_size,
        num_hidden_layers=t.num_hidden_layers, num_attention_heads=t.num_attention_heads,
        num_key_value_heads=t.num_key_value_heads, max_position_embeddings=cfg.model.max_length,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,
        attn_implementation=cfg.model.attn_implementation, **_head_kwargs(task),
    )
    cls = CausalLlamaForQuestionAnswering if task.is_qa else LlamaForSequenceClassification
    return cls(config)


def check_loading_info(info: dict, source: str) -> LoadReport:
    """Split missing keys into the new head (expected) and base weights (an error)."""
    missing = sorted(info.get("missing_keys", []))
    new = [k for k in missing if k.startswith(HEAD_PREFIXES)]
    base = [k for k in missing if not k.startswith(HEAD_PREFIXES)]
    return LoadReport(source=source, new_keys=new, missing_base_keys=base)


@functools.cache
def hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether the Hugging Face hub can be reached, asked once per process: False in offline mode (HF_HUB_OFFLINE,
    TRANSFORMERS_OFFLINE), else a TCP connection to the hub or the HTTPS proxy within `timeout_s`
    (tunebench.data.hub.probe_hub). Offline, huggingface_hub would retry every request with back-off (54 s for
    one tokenizer, measured); unreachable, models load from the local cache only."""
    from tunebench.data.hub import OFFLINE_VARIABLES, offline_mode, probe_hub

    if offline_mode((*OFFLINE_VARIABLES, "TRANSFORMERS_OFFLINE")):
        return False
    return probe_hub(timeout=timeout_s) is None


@contextlib.contextmanager
def hub_offline(offline: bool = True):
    """huggingface_hub in offline mode for the duration (as HF_HUB_OFFLINE=1 would set it at import): not even
    its user-agent lookup goes to the network."""
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = before or offline
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def from_pretrained_checked(cls, cfg: Config, kwargs: dict):
    """`cls.from_pretrained` on model.name (a local folder, a hub id or a GGUF file in a folder) with one
    TunebenchError line for a missing folder, an unreadable checkpoint or an unreachable hub (offline: the
    local cache only, no retries)."""
    name = cfg.model.name
    if cfg.model.gguf_file:
        kwargs = dict(kwargs, gguf_file=cfg.model.gguf_file)
    local = Path(name).expanduser()
    looks_local = local.exists() or name.startswith((".", "/", "~"))
    if looks_local and not local.exists():
        raise TunebenchError(f"model.name {name!r}: folder not found")
    if local.exists():
        name = str(local)
        if cfg.model.gguf_file and not (local / cfg.model.gguf_file).is_file():
            raise TunebenchError(f"model.gguf_file {cfg.model.gguf_file!r}: not found in {local}")
    offline = not local.exists() and not hub_reachable()
    if offline:
        kwargs = dict(kwargs, local_files_only=True)   # the local HF cache only: no retries against a dead network
    try:
        with quiet_transformers(), hub_offline(offline):
            return cls.from_pretrained(name, **kwargs)
    except Exception as e:  # noqa: BLE001 -- a corrupt file raises anything from OSError to SafetensorError
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if local.exists():
            raise TunebenchError(f"model.name {name!r}: cannot load ({type(e).__name__}: {first})") from None
        if not isinstance(e, OSError):
            raise
        raise TunebenchError(
            f"model.name {name!r}: not a local folder and it could not be fetched from the Hugging Face hub "
            f"(offline?). Download it where there is network (`hf download {name} --local-dir DIR`) and set "
            f"model.name=DIR, or use model.name=tiny"
        ) from None
