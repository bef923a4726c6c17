"""What a run costs before it runs: training examples, tokens and FLOPs.

Pure, except the two lookups at the bottom (`lookup_model_size` reads a local config.json,
`tokens_per_example` samples the builtin generator).

Conventions (stated in `tunebench plan show` too):
- Tokens = training examples x epochs x mean tokens per example (or max_steps x batch x accumulation x mean
  tokens when max_steps > 0), one device. Mean tokens per example: for the official data, the table below;
  for the builtin tasks, measured on 200 generated examples (whitespace words, which the tiny word-level
  tokenizer maps one to one; x 1.35 for a real tokenizer) plus special tokens. Capped at model.max_length.
  Non-padding tokens: length-grouped batches waste little, and the waste is not counted. Evaluation is not
  counted.
- N = non-embedding parameters: the weights every token multiplies (Kaplan et al. 2020, section 2.1). The
  embedding table is a lookup, and the LM head is replaced by a task head of hidden x labels.
- Full fine-tuning: 6 N FLOPs per token (forward 2N, activation gradients 2N, weight gradients 2N).
- LoRA: 4 N + 6 A per token, A = adapter parameters: frozen weights need no weight gradients, but activation
  gradients still flow through every layer to reach the adapters below; the adapters cost what any trained
  weight does.
- Gradient checkpointing recomputes the forward: + 2 N (+ 2 A).
- Attention-score FLOPs (about 2 x layers x context x hidden per token) are left out: under 10% at these
  lengths.
"""

from __future__ import annotations

import functools
import json
import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tunebench.config import Config, DataConfig, LoraConfig, ModelConfig
from tunebench.data.tasks import get_task

# Mean tokens per training example under the LLaMA tokenizer, including the 2-3 special tokens: mean words
# per example in the official train files (SQuAD: the dev file, context + question) x 1.35 tokens per word
# (SentencePiece LLaMA on English; chars / 4 gives the same within 10%). Words: SST-2 9.4, MRPC 43.9 (both
# sentences), RTE 52.4, SQuAD v2 137.9.
MEAN_TOKENS_PER_EXAMPLE = {"sst2": 15, "mrpc": 62, "rte": 77, "squad_v2": 200}
TOKENS_PER_WORD = 1.35
BUILTIN_SAMPLE = 200

# Published configs (config.json on the hub) of models the study may name; other hub ids are "unknown".
KNOWN_MODELS: dict[str, dict] = {
    "princeton-nlp/Sheared-LLaMA-1.3B": {"hidden_size": 2048, "num_hidden_layers": 24,
                                         "num_attention_heads": 16, "num_key_value_heads": 16,
                                         "intermediate_size": 5504, "vocab_size": 32000,
                                         "tie_word_embeddings": False},
    "princeton-nlp/Sheared-LLaMA-2.7B": {"hidden_size": 2560, "num_hidden_layers": 32,
                                         "num_attention_heads": 20, "num_key_value_heads": 20,
                                         "intermediate_size": 6912, "vocab_size": 32000,
                                         "tie_word_embeddings": False},
    "meta-llama/Llama-2-7b-hf": {"hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
                                 "num_key_value_heads": 32, "intermediate_size": 11008, "vocab_size": 32000,
                                 "tie_word_embeddings": False},
    "HuggingFaceTB/SmolLM2-135M": {"hidden_size": 576, "num_hidden_layers": 30, "num_attention_heads": 9,
                                   "num_key_value_heads": 3, "intermediate_size": 1536, "vocab_size": 49152,
                                   "tie_word_embeddings": True},
}
KNOWN_MODELS["HuggingFaceTB/SmolLM2-135M-Instruct"] = KNOWN_MODELS["HuggingFaceTB/SmolLM2-135M"]

# Rough wall-clock conversion for planning: H100 SXM dense bf16 peak at an assumed 40% utilization.
H100_PEAK_FLOPS = 989e12
ASSUMED_MFU = 0.4


@dataclass(frozen=True)
class ModelSize:
    """A LLaMA architecture's shapes and parameter counts."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int | None          # None: unknown (only the total needs it)
    tied: bool
    source: str                # where the shapes came from

    @property
    def non_embedding(self) -> int:
        """Per layer: q, k, v, o, gate, up, down and two RMSNorms; plus the final norm."""
        return self.layers * sum(i * o for i, o in self.projections().values()) + self.layers * 2 * self.hidden \
            + self.hidden

    @property
    def total(self) -> int | None:
        """As a causal LM (embeddings + LM head unless tied), the number model cards quote."""
        if self.vocab is None:
            return None
        return self.non_embedding + self.vocab * self.hidden * (1 if self.tied else 2)

    def projections(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each linear layer of one decoder layer."""
        q, kv, h, i = self.heads * self.head_dim, self.kv_heads * self.head_dim, self.hidden, self.intermediate
        return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}


def size_from_hf_config(d: dict, source: str) -> ModelSize:
    """A transformers LlamaConfig-style dict -> ModelSize."""
    heads = int(d["num_attention_heads"])
    return ModelSize(
        hidden=int(d["hidden_size"]), layers=int(d["num_hidden_layers"]), heads=heads,
        kv_heads=int(d.get("num_key_value_heads") or heads),
        head_dim=int(d.get("head_dim") or d["hidden_size"] // heads), intermediate=int(d["intermediate_size"]),
        vocab=int(d["vocab_size"]) if d.get("vocab_size") else None,
        tied=bool(d.get("tie_word_embeddings", False)), source=source,
    )


def tiny_size(model: ModelConfig, vocab: int | None = None) -> ModelSize:
    t = model.tiny
    return ModelSize(hidden=t.hidden_size, layers=t.num_hidden_layers, heads=t.num_attention_heads,
                     kv_heads=t.num_key_value_heads, head_dim=t.hidden_size // t.num_attention_heads,
                     intermediate=t.intermediate_size, vocab=vocab, tied=False, source="model.tiny")


def lora_params(size: ModelSize, lora: LoraConfig) -> int:
    """A and B of every targeted projection: r x (in + out) each, plus DoRA's magnitude vector (out)."""
    per_layer = 0
    for name, (fan_in, fan_out) in size.projections().items():
        if name in lora.target_modules:
            per_layer += lora.r * (fan_in + fan_out) + (fan_out if lora.use_dora else 0)
    return size.layers * per_layer


# ---------------------------------------------------------------- tokens and FLOPs


@dataclass(frozen=True)
class RunCost:
    train_examples: int
    train_tokens: int
    flops: float | None        # None when the model's size is unknown

    @property
    def weight(self) -> float:
        """What progress estimates weigh runs by: FLOPs when known, else tokens."""
        return self.flops if self.flops is not None else float(self.train_tokens)


def train_examples(task: str, data: DataConfig) -> int:
    """Train size after carving the validation split (a fraction or a count) and applying the cap."""
    total = data.builtin_train_size if data.source == "builtin" else get_task(task).official_counts["train"]
    held_out = round(total * data.validation_size) if data.validation_size < 1 else int(data.validation_size)
    n = max(total - held_out, 0)
    return min(n, data.max_train_examples) if data.max_train_examples else n


def train_tokens(cfg: Config, per_example: float | None = None) -> int:
    """Training tokens of a run; `per_example` defaults to the official-data table."""
    t = cfg.training
    mean = min(per_example if per_example is not None else MEAN_TOKENS_PER_EXAMPLE[cfg.task], cfg.model.max_length)
    if t.max_steps > 0:
        return round(t.max_steps * t.per_device_train_batch_size * t.gradient_accumulation_steps * mean)
    return round(round(train_examples(cfg.task, cfg.data) * t.num_train_epochs) * mean)


def flops_per_token(cfg: Config, size: ModelSize) -> float:
    n = size.non_embedding
    if cfg.method == "full":
        per_token = 6 * n
        recompute = 2 * n
    else:
        a = lora_params(size, cfg.lora)
        per_token = 4 * n + 6 * a
        recompute = 2 * n + 2 * a
    return float(per_token + (recompute if cfg.training.gradient_checkpointing else 0))


def estimate_run_cost(cfg: Config, size: ModelSize | None, per_example: float | None = None) -> RunCost:
    """Examples, tokens and FLOPs of one run; FLOPs None when the model size is unknown."""
    tokens = train_tokens(cfg, per_example)
    flops = tokens * flops_per_token(cfg, size) if size is not None else None
    return RunCost(train_examples(cfg.task, cfg.data), tokens, flops)


def total_cost(costs: Iterable[RunCost]) -> RunCost:
    costs = list(costs)
    flops = [c.flops for c in costs]
    return RunCost(sum(c.train_examples for c in costs), sum(c.train_tokens for c in costs),
                   None if any(f is None for f in flops) else math.fsum(f for f in flops if f is not None))


def gpu_hours(flops: float) -> float:
    return flops / (H100_PEAK_FLOPS * ASSUMED_MFU) / 3600


# ---------------------------------------------------------------- formatting


def format_count(n: float) -> str:
    """1_345_423_360 -> '1.35B'; 950 -> '950'."""
    for div, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:.3g}" if isinstance(n, float) else str(n)


def format_flops(flops: float | None) -> str:
    if flops is None:
        return "unknown (model size unknown)"
    return f"{flops:.2e} FLOPs (~{gpu_hours(flops):.3g} H100-h)"


# ---------------------------------------------------------------- lookups (side effects)


def lookup_model_size(model: ModelConfig) -> ModelSize | None:
    """`tiny` from model.tiny; a local folder from its config.json; a hub id from KNOWN_MODELS; else None."""
    if model.name == "tiny":
        return tiny_size(model, _tiny_vocab())
    folder = Path(model.name)
    if (folder / "config.json").is_file():
        try:
            return size_from_hf_config(json.loads((folder / "config.json").read_text()), f"{folder}/config.json")
        except (KeyError, ValueError, TypeError):
            return None
    if model.name in KNOWN_MODELS:
        return size_from_hf_config(KNOWN_MODELS[model.name], "published config (tunebench.plan.cost)")
    return None


def _tiny_vocab() -> int | None:
    try:  # the tiny tokenizer is word-level over the builtin vocabulary, plus <unk>, <s>, </s>
        from tunebench.data.builtin import VOCABULARY
    except ImportError:
        return None
    return len(set(VOCABULARY) | {"<unk>", "<s>", "</s>"})


def tokens_per_example(cfg: Config) -> float:
    """Mean training tokens per example: measured for the builtin tasks, the table for official data."""
    if cfg.data.source != "builtin":
        return float(MEAN_TOKENS_PER_EXAMPLE[cfg.task])
    words, specials = builtin_mean_words(cfg.task)
    return words * (1.0 if cfg.model.name == "tiny" else TOKENS_PER_WORD) + specials


@functools.lru_cache(maxsize=8)
def builtin_mean_words(task: str) -> tuple[float, int]:
    """(mean whitespace words, special tokens) of builtin examples: <s> before each text of the input."""
    from tunebench.data.builtin import generate

    records = generate(task, BUILTIN_SAMPLE, seed=0)
    if "context" in records[0]:
        return statistics.fmean(len(r["question"].split()) + len(r["context"].split()) for r in records), 2
    words = statistics.fmean(len(r["text_a"].split()) + len((r.get("text_b") or "").split()) for r in records)
    return words, 2 if records[0].get("text_b") is not None else 1
