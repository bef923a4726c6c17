"""Post-hoc analysis of one run folder: forgetting and weight-update spectra -> analysis.json.

The side-effect edge of tunebench.analysis: reads a run folder (docs/results.md), loads models, calls the
pure functions of `spectrum` and `forgetting`, and writes analysis.json atomically. Nothing here trains.

Which weights are compared:
  before  the base model exactly as the run loaded it: the checkpoint in the dtype the run loaded it in (the
          precision policy's frozen-weight dtype: fp32 unless model.dtype=bfloat16 or bf16-true), or for
          `tiny` the random model rebuilt from the run's seed (the engine seeds before building it, so the
          rebuild is bit-identical). Everything is then upcast to float32,
          so a bf16-trained update is not drowned in fp32->bf16 rounding noise.
  after   LoRA: adapter/ (PEFT) loaded onto `before`; per wrapped linear dW = the LoRA layer's
          get_delta_weight (B @ A * scale, exact rank <= r) and W_after = the merged weight (W_before + dW;
          with DoRA, whose merge rescales columns, dW = W_after - W_before). Full: model/ (saved only with
          training.save_full_model=true); the same target matrices as LoRA wraps (lora.target_modules).

The LM head for the forgetting measure (the task head is never used):
  checkpoint with tied embeddings (tie_word_embeddings, e.g. stories260K): kept tied, as the model would be,
          so after full fine-tuning, which changes the embedding matrix, the LM head follows the tuned
          embeddings. LoRA does not touch the embeddings, so its LM head is the base's either way.
  checkpoint with its own lm_head: the checkpoint's, unchanged (fine-tuning never saw it).
  tiny:   a random LM head drawn from the run's seed, the same before and after.
The JSON records which one was used ("lm_head": "tied" | "base" | "random"). With `tiny` the word-level
tokenizer knows only the builtin tasks' words, so general prose is mostly <unk>: its forgetting numbers test
the plumbing, not a model.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import torch

from tunebench.analysis.forgetting import TextSet, forgetting_record, lm_loss_sum, load_text, token_windows
from tunebench.analysis.spectrum import module_info, summarize_spectrum, update_spectrum
from tunebench.config import Config, load_config
from tunebench.errors import TunebenchError
from tunebench.io import atomic_write_json
from tunebench.results import ANALYSIS_FILE, STATUS_OK, find_ok_runs, load_analysis_pairs, read_metrics

__all__ = ["ANALYSIS_FILE", "find_ok_runs", "load_analysis_pairs"]  # re-exported: they live in results.py
SCHEMA = 2   # 2: energy_rank and Roy-Vetterli effective_rank (1 stored the energy rank as effective_rank)
DEFAULT_TOP_K = 10
DEFAULT_EPS = 0.5
DEFAULT_ENERGY = 0.9
DEFAULT_MAX_TOKENS = 100_000
ADAPTER_NAME = "default"


class RunSkipped(TunebenchError):
    """A run folder that cannot be analysed, for a reason said in one line (not ok, weights not saved)."""


# ---------------------------------------------------------------- public API


def analyze_run(run_dir: str | Path, text_spec: str | TextSet = "builtin", top_k: int = DEFAULT_TOP_K,
                eps: float = DEFAULT_EPS, *, energy: float = DEFAULT_ENERGY,
                max_tokens: int | None = DEFAULT_MAX_TOKENS, batch_size: int = 8,
                device: str | None = None) -> dict:
    """The analysis.json record of one ok run folder (nothing is written; see `save_analysis`).

    Raises RunSkipped when the run is not ok or its tuned weights were not saved.
    """
    from tunebench.data.tasks import get_task
    from tunebench.model import load_tokenizer, resolve_device

    validate_settings(top_k, eps, energy, max_tokens)
    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    cfg, metrics = read_run(run_dir)
    weights = tuned_weights_dir(run_dir, cfg)
    text = text_spec if isinstance(text_spec, TextSet) else load_text(text_spec)
    device = device or resolve_device()
    task, tokenizer = get_task(cfg.task), load_tokenizer(cfg)
    dtype = training_dtype(cfg, metrics)

    base = load_base_task_model(cfg, task, tokenizer, dtype, device)
    causal, lm_head = build_causal_lm(cfg, base, dtype, device)
    block_size = min(cfg.model.max_length, causal.config.max_position_embeddings)
    windows = token_windows(tokenizer, text.documents, block_size, max_tokens)
    before = lm_loss_sum(causal, windows, tokenizer.pad_token_id, batch_size, device)

    if cfg.method == "lora":
        rows, tuned = lora_spectrum(base, weights, top_k, eps, energy, device)
    else:
        tuned = load_saved_weights(weights, device)
        rows = full_spectrum(base, tuned, cfg.lora.target_modules, top_k, eps, energy)
    prefix = base.base_model_prefix + "."
    del base
    backbone(causal).load_state_dict({k.removeprefix(prefix): v for k, v in tuned.items() if k.startswith(prefix)})
    after = lm_loss_sum(causal, windows, tokenizer.pad_token_id, batch_size, device)

    return {
        "schema": SCHEMA,
        "run_id": metrics.get("run_id", run_dir.name),
        "task": cfg.task,
        "method": cfg.method,
        "lora_r": cfg.lora.r if cfg.method == "lora" else None,
        "model": cfg.model.name,
        "settings": {"text": text.spec, "top_k": top_k, "eps": eps, "energy": energy, "max_tokens": max_tokens,
                     "block_size": block_size, "weights_dtype": str(dtype).removeprefix("torch."),
                     "device": str(device)},
        "lm_head": lm_head,
        "forgetting": forgetting_record(text, before, after),
        "spectrum": rows,
        "summary": summarize_spectrum(rows),
        "elapsed_s": time.perf_counter() - t0,
    }


def save_analysis(run_dir: str | Path, record: dict) -> Path:
    """Write <run_dir>/analysis.json atomically (a reader never sees half a file)."""
    return atomic_write_json(Path(run_dir) / ANALYSIS_FILE, record)


def validate_settings(top_k: int, eps: float, energy: float, max_tokens: int | None) -> None:
    if top_k < 1:
        raise TunebenchError(f"--top-k {top_k}: must be at least 1")
    if not 0 < eps <= 1:
        raise TunebenchError(f"--eps {eps}: must be in (0, 1] (a cosine similarity threshold)")
    if not 0 < energy <= 1:
        raise TunebenchError(f"--energy {energy}: must be in (0, 1] (a fraction of the update's energy)")
    if max_tokens is not None and max_tokens < 2:
        raise TunebenchError(f"--max-tokens {max_tokens}: must be at least 2")


# ---------------------------------------------------------------- the run folder


def read_run(run_dir: Path) -> tuple[Config, dict]:
    """The resolved config and metrics of an ok run; RunSkipped otherwise."""
    metrics = read_metrics(run_dir)
    if metrics is None:
        raise RunSkipped(f"{run_dir}: no readable metrics.json")
    if metrics.get("status") != STATUS_OK:
        raise RunSkipped(f"{run_dir}: status {metrics.get('status')!r}, not ok")
    if not (run_dir / "config.yaml").is_file():
        raise RunSkipped(f"{run_dir}: no config.yaml")
    return load_config([run_dir / "config.yaml"]), metrics


def tuned_weights_dir(run_dir: Path, cfg: Config) -> Path:
    if cfg.method == "lora":
        adapter = run_dir / "adapter"
        if not (adapter / "adapter_config.json").is_file():
            raise RunSkipped(f"{run_dir.name}: LoRA run without adapter/ (the run saved no weights)")
        return adapter
    model = run_dir / "model"
    if not (model / "config.json").is_file():
        raise RunSkipped(f"{run_dir.name}: full fine-tuning run without model/: set training.save_full_model=true "
                         f"for full runs to analyse them")
    return model


def training_dtype(cfg: Config, metrics: dict) -> torch.dtype:
    """The dtype the run loaded its weights in: the frozen-weight dtype its metrics.json records (tunebench.
    precision; the trainable dtype for full fine-tuning, which has no frozen weight). Runs written before the
    precision record loaded bf16 on a GPU under model.dtype auto or bfloat16, fp32 on a CPU."""
    recorded = metrics.get("precision") or {}
    name = recorded.get("frozen_dtype") or recorded.get("trainable_dtype")
    if name and not str(name).startswith("mixed"):
        return getattr(torch, name)
    device = metrics.get("device")
    if device not in ("cpu", "cuda"):
        env_device = str((metrics.get("env") or {}).get("device", "cpu"))
        device = "cpu" if env_device.startswith("cpu") else "cuda"
    if cfg.model.dtype in ("float32", "bfloat16"):
        return getattr(torch, cfg.model.dtype)
    return torch.bfloat16 if device == "cuda" else torch.float32


# ---------------------------------------------------------------- models


def backbone(model: torch.nn.Module) -> torch.nn.Module:
    """The LlamaModel inside a task or causal-LM model (`model.model`)."""
    return getattr(model, model.base_model_prefix)


def load_base_task_model(cfg: Config, task, tokenizer, dtype: torch.dtype, device: str) -> torch.nn.Module:
    """The task model as the engine built it before training (seeded as in train.build_model), in float32."""
    from transformers import set_seed

    from tunebench.model import load_model

    set_seed(cfg.training.seed)
    return load_model(cfg, task, tokenizer, device, dtype=dtype).float().eval()


def build_causal_lm(cfg: Config, base: torch.nn.Module, dtype: torch.dtype,
                    device: str) -> tuple[torch.nn.Module, str]:
    """A causal LM holding the base backbone, and which LM head it has ("tied" | "base" | "random")."""
    from transformers import AutoModelForCausalLM, LlamaForCausalLM

    from tunebench.model import TINY, from_pretrained_checked

    if cfg.model.name == TINY:
        torch.manual_seed(cfg.training.seed)  # the same random LM head for every run of this seed
        causal = LlamaForCausalLM(copy.deepcopy(base.config))
        kind = "random"
    else:
        kwargs = {"dtype": dtype, "attn_implementation": cfg.model.attn_implementation}
        causal = from_pretrained_checked(AutoModelForCausalLM, cfg, kwargs)
        tied = causal.get_output_embeddings().weight is causal.get_input_embeddings().weight
        kind = "tied" if tied else "base"
    causal = causal.to(device).float().eval()
    backbone(causal).load_state_dict(backbone(base).state_dict())
    return causal, kind


def load_saved_weights(path: Path, device: str) -> dict[str, torch.Tensor]:
    """The state dict of a saved task model (model/*.safetensors, sharded or not), in float32.

    Read from the files rather than through a model class: the keys are the task model's module paths,
    whatever its head class is called."""
    from safetensors.torch import load_file

    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise TunebenchError(f"{path}: no *.safetensors weights in the saved model")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(load_file(str(f), device=str(device)))
    return {k: v.float() for k, v in state.items()}


# ---------------------------------------------------------------- spectra


def spectrum_row(name: str, w_before: torch.Tensor, delta: torch.Tensor, w_after: torch.Tensor, top_k: int,
                 eps: float, energy: float) -> dict:
    return {"module": name, **module_info(name),
            **update_spectrum(w_before, delta, w_after, top_k=top_k, eps=eps, energy=energy)}


@torch.no_grad()
def lora_spectrum(base: torch.nn.Module, adapter_dir: Path, top_k: int, eps: float, energy: float,
                  device: str) -> tuple[list[dict], dict[str, torch.Tensor]]:
    """Per LoRA layer: dW from PEFT, then merge it. Returns the rows and the merged task model's state."""
    from peft import PeftModel
    from peft.tuners.lora import LoraLayer

    peft_model = PeftModel.from_pretrained(base, str(adapter_dir)).to(device).float().eval()
    prefix = "base_model.model."
    rows = []
    for name, layer in peft_model.named_modules():
        if not isinstance(layer, LoraLayer) or ADAPTER_NAME not in layer.lora_A:
            continue
        w_before = layer.get_base_layer().weight.detach().clone()             # (d_out, d_in)
        dora = bool(layer.use_dora.get(ADAPTER_NAME, False))
        delta = None if dora else layer.get_delta_weight(ADAPTER_NAME).detach()  # (d_out, d_in), B @ A * scale
        layer.merge(adapter_names=[ADAPTER_NAME])
        w_after = layer.get_base_layer().weight.detach()                      # (d_out, d_in), merged
        if delta is None:
            delta = w_after - w_before
        rows.append(spectrum_row(name.removeprefix(prefix), w_before, delta, w_after, top_k, eps, energy))
    merged = peft_model.unload()  # the merged layers become plain linears again
    return rows, merged.state_dict()


@torch.no_grad()
def full_spectrum(base: torch.nn.Module, tuned: dict[str, torch.Tensor], target_modules: list[str], top_k: int,
                  eps: float, energy: float) -> list[dict]:
    """dW = W_tuned - W_base for the backbone linears LoRA would wrap (lora.target_modules)."""
    from tunebench.methods import wrapped_linears

    prefix = base.base_model_prefix + "."
    rows = []
    for name, module in wrapped_linears(base, target_modules).items():
        if not name.startswith(prefix):
            continue  # the task head is not part of the pretrained model
        if name + ".weight" not in tuned:
            raise TunebenchError(f"{name}.weight: missing from the saved fine-tuned model")
        w_before = module.weight.detach()                                     # (d_out, d_in)
        w_after = tuned[name + ".weight"]                                     # (d_out, d_in)
        rows.append(spectrum_row(name, w_before, w_after - w_before, w_after, top_k, eps, energy))
    return rows
