"""What a run costs before it runs: training examples, tokens, FLOPs and GPU-hours.

Pure, except the lookups at the bottom (`lookup_model_size` reads a local config.json, `tokens_per_example`
samples the builtin generator, `load_measured` reads a `tunebench bench --gpu-check` result).

Conventions (stated in `tunebench plan show` too):
- Tokens = training examples x epochs x mean tokens per example (or max_steps x batch x accumulation x mean
  tokens when max_steps > 0), one device. Mean tokens per example: for the official data, the task table's
  `mean_tokens` (tunebench.tasks);
  for the builtin tasks, measured on 200 generated examples (whitespace words, which the tiny word-level
  tokenizer maps one to one; x 1.35 for a real tokenizer) plus special tokens. Capped at model.max_length.
  Non-padding tokens: length-grouped batches waste little, and the waste is not counted. Evaluation is not
  counted.
- FLOPs per token: the benchmark's convention (tunebench.flops, PaLM appendix B), one convention for the
  plan and for measured MFU:
      full fine-tuning  6 N + 12 L d T
      LoRA              4 N_frozen + 6 N_trainable + 12 L d T
  N = the parameters every token multiplies: the non-embedding weights (Kaplan et al. 2020, section 2.1:
  the embedding table is a lookup) plus the task head (hidden x labels; hidden x 2 + 2 for SQuAD). For
  LoRA, N_frozen = the base model's non-embedding weights, N_trainable = the adapters + the trained head.
  12 L d T is attention (QK^T and AV over T positions, forward + backward; L layers, d hidden).
- T: the benchmark uses each batch's padded length. A plan knows no batches, so T = the task's mean tokens
  per example (capped at model.max_length): batches are length-grouped and dynamically padded, so a batch's
  padded length is close to its examples' length. (Tokens in long batches weigh more, so the token-weighted
  T is somewhat higher when lengths vary; attention is 0.1-4% of the total for Sheared-LLaMA-1.3B at 15-512
  tokens.)
- Gradient checkpointing recomputes the forward: + 2 N (frozen and trainable) + 4 L d T (attention's
  forward third). These are executed FLOPs, not model FLOPs: MFU never counts them (PaLM's convention).
- GPU-hours: executed FLOPs / (peak x ASSUMED_MFU) on the planning GPU (PLANNING_GPU's dense bf16 peak, from
  tunebench.flops.PEAK_BF16_FLOPS), or, with a measured MFU per method (`plan show --measured FILE`), model
  FLOPs / (the measured device's peak x that MFU): a measured MFU already pays for any recompute, when it
  was measured with the plan's gradient_checkpointing setting.
"""

from __future__ import annotations

import functools
import json
import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tunebench.config import Config, DataConfig, LoraConfig, ModelConfig
from tunebench.errors import TunebenchError
from tunebench.flops import FlopParams, attention_flops_per_token, peak_flops, train_flops_per_token
from tunebench.tasks import get_task

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

# Rough wall-clock conversion for planning: the H100 SXM's dense bf16 peak (tunebench.flops.PEAK_BF16_FLOPS,
# the one table of peaks) at an assumed 40% utilization; `plan show --measured FILE` replaces both.
PLANNING_GPU = "H100"
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


def head_params(size: ModelSize, task: str) -> int:
    """The task head: `score` (hidden x labels, no bias) for classification, `qa_outputs` (hidden x 2 + a bias
    of 2) for extractive QA (transformers' LlamaForSequenceClassification / GenericForQuestionAnswering)."""
    spec = get_task(task)
    return size.hidden * 2 + 2 if spec.is_qa else size.hidden * spec.num_labels


def lora_params(size: ModelSize, lora: LoraConfig) -> int:
    """The adapters of every targeted projection (config.LoraConfig.added_params: r x (in + out) each, plus
    DoRA's magnitude vector), from the shapes alone."""
    return size.layers * sum(lora.added_params(fan_in, fan_out)
                             for name, (fan_in, fan_out) in size.projections().items() if name in lora.target_modules)


# ---------------------------------------------------------------- tokens and FLOPs


@dataclass(frozen=True)
class RunCost:
    train_examples: int
    train_tokens: int
    flops: float | None        # executed FLOPs (recompute included); None when the model's size is unknown
    recompute_flops: float | None = 0.0   # gradient checkpointing's recomputed forward, part of `flops`
    max_steps: int = 0         # training.max_steps when it sets the run's length (then not train_examples); 0: not
    step_examples: int = 0     # examples per optimizer step (batch x accumulation)

    @property
    def weight(self) -> float:
        """What progress estimates weigh runs by: FLOPs when known, else tokens."""
        return self.flops if self.flops is not None else float(self.train_tokens)

    @property
    def model_flops(self) -> float | None:
        """FLOPs without the recompute: what MFU counts."""
        return None if self.flops is None else self.flops - (self.recompute_flops or 0.0)


def train_examples(task: str, data: DataConfig) -> int:
    """Train size after carving the validation split (a fraction or a count) and applying the cap."""
    total = data.builtin_train_size if data.source == "builtin" else get_task(task).official_counts["train"]
    held_out = round(total * data.validation_size) if data.validation_size < 1 else int(data.validation_size)
    n = max(total - held_out, 0)
    return min(n, data.max_train_examples) if data.max_train_examples else n


def mean_tokens(cfg: Config, per_example: float | None = None) -> float:
    """Mean tokens per training example (`per_example`, default the task table's official-data mean_tokens), capped at
    model.max_length: the tokens of a run per example, and the T of the attention FLOPs."""
    return min(per_example if per_example is not None else get_task(cfg.task).mean_tokens, cfg.model.max_length)


def train_tokens(cfg: Config, per_example: float | None = None) -> int:
    """Training tokens of a run; `per_example` defaults to the task table's official-data mean_tokens."""
    t = cfg.training
    mean = mean_tokens(cfg, per_example)
    if t.max_steps > 0:
        return round(t.max_steps * t.per_device_train_batch_size * t.gradient_accumulation_steps * mean)
    return round(round(train_examples(cfg.task, cfg.data) * t.num_train_epochs) * mean)


def flop_params(cfg: Config, size: ModelSize) -> FlopParams:
    """The benchmark's parameter split (tunebench.flops.count_flop_params) from the shapes: full fine-tuning
    trains every non-embedding weight and the head; LoRA trains the adapters and the head over a frozen base."""
    head = head_params(size, cfg.task)
    if cfg.method == "full":
        return FlopParams(frozen=0, trainable=size.non_embedding + head, n_layers=size.layers, d_model=size.hidden)
    return FlopParams(frozen=size.non_embedding, trainable=lora_params(size, cfg.lora) + head,
                      n_layers=size.layers, d_model=size.hidden)


def recompute_flops_per_token(p: FlopParams, seq_len: float) -> float:
    """Gradient checkpointing's second forward: 2 N (every weight used) + attention's forward, 4 L d T (a
    third of flops.attention_flops_per_token)."""
    return 2.0 * p.total + attention_flops_per_token(p.n_layers, p.d_model, seq_len) / 3


def flops_per_token(cfg: Config, size: ModelSize, per_example: float | None = None) -> float:
    """Executed FLOPs per training token: flops.train_flops_per_token at T = mean tokens per example, plus the
    recompute when gradient checkpointing is on."""
    p, seq_len = flop_params(cfg, size), mean_tokens(cfg, per_example)
    recompute = recompute_flops_per_token(p, seq_len) if cfg.training.gradient_checkpointing else 0.0
    return train_flops_per_token(p, seq_len) + recompute


def estimate_run_cost(cfg: Config, size: ModelSize | None, per_example: float | None = None) -> RunCost:
    """Examples, tokens and FLOPs of one run; FLOPs None when the model size is unknown."""
    t = cfg.training
    tokens = train_tokens(cfg, per_example)
    length = {"max_steps": max(t.max_steps, 0),
              "step_examples": t.per_device_train_batch_size * t.gradient_accumulation_steps}
    if size is None:
        return RunCost(train_examples(cfg.task, cfg.data), tokens, None, None, **length)
    flops = tokens * flops_per_token(cfg, size, per_example)
    recompute = (tokens * recompute_flops_per_token(flop_params(cfg, size), mean_tokens(cfg, per_example))
                 if t.gradient_checkpointing else 0.0)
    return RunCost(train_examples(cfg.task, cfg.data), tokens, flops, recompute, **length)


def total_cost(costs: Iterable[RunCost]) -> RunCost:
    costs = list(costs)
    unknown = any(c.flops is None for c in costs)
    return RunCost(sum(c.train_examples for c in costs), sum(c.train_tokens for c in costs),
                   None if unknown else math.fsum(c.flops for c in costs),
                   None if unknown else math.fsum(c.recompute_flops or 0.0 for c in costs))


# ---------------------------------------------------------------- GPU-hours


@dataclass(frozen=True)
class Measured:
    """One method's measured throughput (`tunebench bench --gpu-check`): MFU on a device with a known peak."""

    mfu: float
    device_name: str
    peak: float
    tokens_per_s: float | None = None
    tokens_per_s_by_task: dict[str, float] = field(default_factory=dict)   # at each task's mean length


@dataclass(frozen=True)
class Utilization:
    """How FLOPs become GPU-hours: the assumed MFU on the planning GPU, or a measured MFU per method."""

    measured: dict[str, Measured]      # method -> its measurement; empty: assumed
    source: str | None = None          # the measurement file

    def hours(self, cost: RunCost, method: str, task: str | None = None) -> float | None:
        """Assumed: executed FLOPs / (peak x ASSUMED_MFU). Measured at the task's own length (the GPU check's
        task_lengths): training tokens / those tokens/s. Otherwise measured: model FLOPs / (peak x MFU), the
        MFU's own convention (it already pays for any recompute of the measured setting), which at the padded
        512 of the summary overstates what the short tasks reach."""
        if self.measured and task in self.for_method(method).tokens_per_s_by_task:
            return cost.train_tokens / self.measured[method].tokens_per_s_by_task[task] / 3600
        if cost.flops is None:
            return None
        if not self.measured:
            return gpu_hours(cost.flops)
        m = self.for_method(method)
        return cost.model_flops / (m.peak * m.mfu) / 3600

    def for_method(self, method: str) -> Measured:
        if method not in self.measured:
            raise TunebenchError(f"--measured {self.source}: no measurement for method {method!r} "
                                 f"(measured: {', '.join(sorted(self.measured))})")
        return self.measured[method]

    def unit(self) -> str:
        """The hours' unit: 'H100-h' (assumed), or the measured device's name, e.g. 'NVIDIA H200-h'."""
        if not self.measured:
            return f"{PLANNING_GPU}-h"
        names = sorted({m.device_name for m in self.measured.values()})
        return f"{' / '.join(names)}-h"

    def describe(self) -> str:
        if not self.measured:
            return (f"{PLANNING_GPU}-h at an assumed {ASSUMED_MFU:.0%} of {planning_peak() / 1e12:.1f} TFLOP/s "
                    "(a lower bound on time: small batches reach less)")
        parts = ", ".join(f"{method} {m.mfu:.1%} of {m.peak / 1e12:.1f} TFLOP/s ({m.device_name})"
                          for method, m in sorted(self.measured.items()))
        by_task = sorted({t for m in self.measured.values() for t in m.tokens_per_s_by_task})
        lengths = (f"; tasks {', '.join(by_task)} at the tokens/s measured at their own mean length"
                   if by_task else "")
        return f"GPU-h at the MFU measured in {self.source}: {parts}{lengths}"


ASSUMED = Utilization({})


def planning_peak() -> float:
    """The planning GPU's dense bf16 peak, from tunebench.flops' table."""
    peak = peak_flops(PLANNING_GPU)
    assert peak is not None, PLANNING_GPU
    return peak


def gpu_hours(flops: float) -> float:
    """Hours on the planning GPU at the assumed MFU."""
    return flops / (planning_peak() * ASSUMED_MFU) / 3600


# ---------------------------------------------------------------- formatting


def format_count(n: float) -> str:
    """1_345_423_360 -> '1.35B'; 950 -> '950'."""
    for div, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:.3g}" if isinstance(n, float) else str(n)


def format_flops(flops: float | None, hours: float | None = None, unit: str = f"{PLANNING_GPU}-h") -> str:
    """'1.23e+18 FLOPs (~0.86 H100-h)'; `hours` defaults to the assumed MFU on the planning GPU."""
    if flops is None:
        return "unknown (model size unknown)"
    return f"{flops:.2e} FLOPs (~{gpu_hours(flops) if hours is None else hours:.3g} {unit})"


# ---------------------------------------------------------------- lookups (side effects)


def lookup_model_size(model: ModelConfig) -> ModelSize | None:
    """`tiny` from model.tiny; a local folder from its config.json; a hub id from KNOWN_MODELS; else None."""
    if model.name == "tiny":   # tunebench.model builds it with max(tiny.vocab_size, the tokenizer's) rows
        return tiny_size(model, max(model.tiny.vocab_size or 0, _tiny_vocab() or 0) or None)
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
    """Mean training tokens per example: measured for the builtin tasks, the task table's for official data."""
    if cfg.data.source != "builtin":
        return float(get_task(cfg.task).mean_tokens)
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


def load_measured(path: str | Path) -> Utilization:
    """The measured MFU per method from a `tunebench bench --gpu-check` result: a JSON object whose `summary`
    maps method -> {"mfu": float, "tokens_per_s": float, "device_name": str}. The device must be in
    tunebench.flops.PEAK_BF16_FLOPS (an MFU means nothing without its peak)."""
    where = f"--measured {path}"
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TunebenchError(f"{where}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise TunebenchError(f"{where}: cannot read ({type(e).__name__})") from None
    except json.JSONDecodeError as e:
        raise TunebenchError(f"{where}: invalid JSON ({e.msg}, line {e.lineno})") from None
    summary = data.get("summary") if isinstance(data, dict) else None
    if not isinstance(summary, dict) or not summary:
        raise TunebenchError(f"{where}: expected a `summary` mapping method -> {{mfu, tokens_per_s, device_name}} "
                             "(written by `tunebench bench --gpu-check`)")
    return Utilization({method: _measured_entry(where, method, entry) for method, entry in summary.items()},
                       str(path))


def _measured_entry(where: str, method: str, entry: object) -> Measured:
    if not isinstance(entry, dict):
        raise TunebenchError(f"{where}: summary.{method}: expected a mapping with mfu, tokens_per_s, device_name")
    mfu, device, tps = entry.get("mfu"), entry.get("device_name"), entry.get("tokens_per_s")
    if mfu is None:
        raise TunebenchError(f"{where}: summary.{method}.mfu = None: the check measured no MFU (no GPU, or a GPU "
                             "without a known peak)")
    if isinstance(mfu, bool) or not isinstance(mfu, (int, float)) or not 0 < mfu <= 1:
        raise TunebenchError(f"{where}: summary.{method}.mfu = {mfu!r}: expected a fraction in (0, 1]")
    if not isinstance(device, str) or not device:
        raise TunebenchError(f"{where}: summary.{method}.device_name = {device!r}: expected the GPU's name")
    peak = peak_flops(device)
    if peak is None:
        raise TunebenchError(f"{where}: summary.{method}.device_name = {device!r}: no known bf16 peak "
                             "(tunebench.flops.PEAK_BF16_FLOPS)")
    if tps is not None and not _positive(tps):
        raise TunebenchError(f"{where}: summary.{method}.tokens_per_s = {tps!r}: expected a positive number")
    by_task = entry.get("tokens_per_s_by_task") or {}
    if not isinstance(by_task, dict) or not all(_positive(v) for v in by_task.values()):
        raise TunebenchError(f"{where}: summary.{method}.tokens_per_s_by_task = {by_task!r}: expected task -> "
                             "a positive number")
    return Measured(float(mfu), device, peak, None if tps is None else float(tps),
                    {str(k): float(v) for k, v in by_task.items()})


def _positive(x: object) -> bool:
    return not isinstance(x, bool) and isinstance(x, (int, float)) and x > 0
