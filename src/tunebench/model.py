"""Model and tokenizer loading: a hub id or local HF folder, a GGUF file, or a tiny random LLaMA.

Architectures: tunebench fine-tunes text-only causal decoders (Llama, Mistral, Qwen2, Gemma, ...). The
checkpoint's own config picks the backbone, `AutoModel` for its model type, so every architecture keeps what is
its own (Qwen2's q/k/v biases, Gemma's embedding scaling and (1 + weight) norms, Mistral's sliding window):
- classification: `AutoModelForSequenceClassification`, the architecture's own class (backbone + `score`);
- SQuAD v2: `Causal<Arch>ForQuestionAnswering` (qa_model_class), transformers' generic extractive-QA head
  (`qa_outputs`, start and end logits per token) on that backbone, stored under the causal LM's own prefix
  (`model` for Llama and its kin), so a causal-LM checkpoint's `model.*` weights land in it.
An architecture that cannot be built exactly so is refused in one line naming it (check_architecture):
multimodal or encoder-decoder configs, model types without an AutoModel backbone (or, for classification,
without a sequence-classification class), and backbones whose attention is not causal (the features put the
question before the context and read the answer's "no answer" score at the last token: both need causal
attention).

Traps handled here (each verified on transformers 5.x):
- Llama checkpoints have no pad token: we set one (eos) on the tokenizer and the model config.
- `LlamaForQuestionAnswering` keeps `base_model_prefix = "transformer"` for backward compatibility, so loading
  it from a causal-LM checkpoint (keys `model.*`) silently re-initializes the whole backbone. Our QA classes
  keep the backbone under the causal LM's prefix.
- transformers only logs the keys it could not place: a checkpoint weight the model has no place for (a bias
  the architecture was built without) is dropped with a log line. check_loading_info treats both directions
  as errors: every model weight but the new head must come from the checkpoint, and every checkpoint weight
  must land in the model, except the benign ones listed in BENIGN_CHECKPOINT_KEYS. (What transformers reports
  is after the model class's own `_keys_to_ignore_on_load_unexpected`; Llama, Mistral, Qwen2 and Gemma
  have none.)
"""

from __future__ import annotations

import contextlib
import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    LlamaConfig,
    LlamaForSequenceClassification,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)
from transformers.modeling_layers import GenericForQuestionAnswering
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_CAUSAL_LM_MAPPING,
    MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING,
    MODEL_MAPPING,
)
from transformers.models.llama.modeling_llama import LlamaPreTrainedModel

from tunebench.config import Config
from tunebench.data.tasks import TaskSpec
from tunebench.errors import TunebenchError

TINY = "tiny"
HEAD_PREFIXES = ("score.", "qa_outputs.")  # the only weights allowed to be new
# Checkpoint weights a task model may leave unused, each for a stated reason; any other unused weight is an error.
BENIGN_CHECKPOINT_KEYS = (
    re.compile(r"^lm_head\."),                   # a causal LM's output head: no part of a task model's backbone
    re.compile(r"(^|\.)rotary_emb\.inv_freq$"),  # rotary frequencies that older checkpoints stored: a buffer
)                                                # computed from the config (rope_parameters), not a weight


class CausalForQuestionAnswering(GenericForQuestionAnswering):
    """Extractive QA head (`qa_outputs`: a start and an end logit per token) on the architecture's own backbone,
    `AutoModel.from_config(config)`, stored under `base_model_prefix` (set per architecture by qa_model_class).
    Mixed with the architecture's PreTrainedModel, whose weight init and attention support it keeps."""

    def get_input_embeddings(self):
        return getattr(self, self.base_model_prefix).get_input_embeddings()

    def set_input_embeddings(self, value):
        getattr(self, self.base_model_prefix).set_input_embeddings(value)


@functools.cache
def qa_model_class(pretrained: type[PreTrainedModel]) -> type:
    """`Causal<Arch>ForQuestionAnswering` for an architecture's PreTrainedModel (e.g. Qwen2PreTrainedModel):
    its backbone under the prefix its causal LM stores it under (`model` for Llama, Mistral, Qwen2, Gemma).
    The class name must end in ForQuestionAnswering: transformers derives the loss and the Trainer's label
    names (start_positions, end_positions) from it."""
    arch = pretrained.__name__.removesuffix("PreTrainedModel")
    return type(f"Causal{arch}ForQuestionAnswering", (CausalForQuestionAnswering, pretrained), {
        "__module__": __name__, "__doc__": f"Extractive QA head on a {arch} backbone (CausalForQuestionAnswering).",
        "base_model_prefix": pretrained.base_model_prefix,
    })


CausalLlamaForQuestionAnswering = qa_model_class(LlamaPreTrainedModel)


@dataclass
class LoadReport:
    """What a checkpoint's loading info says (check_loading_info). Internal to load_model, which raises on any
    `missing_base_keys` or `unexpected_keys` and returns the model alone, not this report."""

    source: str                               # "checkpoint" | "gguf"
    new_keys: list[str] = field(default_factory=list)   # head weights initialized fresh
    missing_base_keys: list[str] = field(default_factory=list)
    unexpected_keys: list[str] = field(default_factory=list)   # checkpoint weights the model would drop
    benign_keys: list[str] = field(default_factory=list)       # unused on purpose (BENIGN_CHECKPOINT_KEYS)


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

    Raises TunebenchError for an architecture that cannot be built exactly (check_architecture), a base weight
    missing from the checkpoint, or a checkpoint weight the model would not use (check_loading_info).
    """
    device = device or resolve_device()
    dtype = dtype or resolve_dtype(cfg, device)
    if cfg.model.name == TINY:
        model = _build_tiny(cfg, task, tokenizer)           # random init: nothing loaded, nothing to check
    else:
        model = _load_checked(cfg, task, dtype)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model.to(device=device, dtype=dtype)


def _load_checked(cfg: Config, task: TaskSpec, dtype: torch.dtype):
    """The task model from the checkpoint, its architecture and its loading checked (one TunebenchError line)."""
    name = cfg.model.name
    cls = check_architecture(from_pretrained_checked(AutoConfig, cfg, {}), name, task)
    kwargs = dict(_head_kwargs(task), dtype=dtype, attn_implementation=cfg.model.attn_implementation,
                  output_loading_info=True)
    model, info = from_pretrained_checked(cls, cfg, kwargs)
    report = check_loading_info(info, source="gguf" if cfg.model.gguf_file else "checkpoint")
    if report.missing_base_keys:
        raise TunebenchError(f"model {name}: {len(report.missing_base_keys)} base weights missing from the "
                             f"checkpoint (would be randomly initialized): {_some(report.missing_base_keys)}")
    if report.unexpected_keys:
        raise TunebenchError(f"model {name}: {len(report.unexpected_keys)} checkpoint weights that the "
                             f"{type(model).__name__} model has no place for (would be dropped): "
                             f"{_some(report.unexpected_keys)}")
    return model


def _some(keys: list[str], n: int = 8) -> str:
    more = len(keys) - n
    return ", ".join(keys[:n]) + (f" and {more} more" if more > 0 else "")


def check_architecture(config, name: str, task: TaskSpec) -> type:
    """The class to load `config`'s checkpoint into for `task`, or one TunebenchError line naming the model type
    when tunebench cannot build it exactly: a text-only causal decoder with an AutoModel backbone whose
    attention modules are all causal (built on the meta device: no memory, no weights read)."""
    where = f"model {name}: architecture {config.model_type!r}"
    if getattr(config, "is_encoder_decoder", False) or config.get_text_config() is not config:
        kind = "an encoder-decoder" if getattr(config, "is_encoder_decoder", False) else "multimodal"
        raise TunebenchError(f"{where} is {kind}: tunebench fine-tunes text-only causal decoders")
    if type(config) not in MODEL_FOR_CAUSAL_LM_MAPPING:
        raise TunebenchError(f"{where} is not a causal language model in transformers: tunebench fine-tunes "
                             f"causal decoders")
    backbone = _meta_backbone(config, where)
    if not _attention_is_causal(backbone):
        raise TunebenchError(f"{where} has non-causal attention ({type(backbone).__name__}): the task features "
                             f"are laid out for a causal decoder (tunebench.features)")
    if not task.is_qa:
        if type(config) not in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING:
            raise TunebenchError(f"{where} has no sequence-classification class in transformers")
        return AutoModelForSequenceClassification
    pretrained = next((c for c in type(backbone).__mro__[1:]
                       if c.__name__.endswith("PreTrainedModel") and c is not PreTrainedModel), None)
    if pretrained is None:
        raise TunebenchError(f"{where}: {type(backbone).__name__} has no PreTrainedModel base to build the "
                             f"question-answering model on")
    return qa_model_class(pretrained)


def _meta_backbone(config, where: str):
    """AutoModel's backbone for `config`, built on the meta device (structure only)."""
    if type(config) not in MODEL_MAPPING:      # asked first: AutoModel's own error lists every model type (seconds)
        raise TunebenchError(f"{where} has no AutoModel backbone in transformers")
    try:
        with quiet_transformers(), torch.device("meta"):
            return AutoModel.from_config(config)
    except Exception as e:  # noqa: BLE001 -- an unmapped config raises ValueError, a broken one anything
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TunebenchError(f"{where}: its AutoModel backbone cannot be built ({first})") from None


def _attention_is_causal(backbone) -> bool:
    """Whether every attention module of the backbone declares causal attention (transformers' `is_causal`:
    False in encoders, and in decoders configured bidirectional, e.g. use_bidirectional_attention)."""
    flags = [m.is_causal for m in backbone.modules() if isinstance(getattr(m, "is_causal", None), bool)]
    return bool(flags) and all(flags)


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
    """Missing keys split into the new head (expected) and base weights (an error); unexpected keys (checkpoint
    weights the model has no place for) split into the benign (BENIGN_CHECKPOINT_KEYS) and the rest (an error)."""
    missing = sorted(info.get("missing_keys", []))
    unexpected = sorted(info.get("unexpected_keys", []))
    benign = [k for k in unexpected if any(p.search(k) for p in BENIGN_CHECKPOINT_KEYS)]
    return LoadReport(source=source, new_keys=[k for k in missing if k.startswith(HEAD_PREFIXES)],
                      missing_base_keys=[k for k in missing if not k.startswith(HEAD_PREFIXES)],
                      unexpected_keys=[k for k in unexpected if k not in benign], benign_keys=benign)


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
