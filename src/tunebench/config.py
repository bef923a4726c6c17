"""Typed configuration: schema defaults (== configs/base.yaml) <- YAML files <- dotted key=value overrides.

Every field is validated on load; an invalid value fails with one line naming the key, the value and what
is allowed (LitGPT `args.py` style). The resolved config is saved with every run.
"""

from __future__ import annotations

import copy
import math
import os
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationError, field_validator, model_validator

from tunebench.errors import TunebenchError
from tunebench.tasks import TASKS, get_task


def _known_task(value: Any) -> str:
    """A task name of the task table (tunebench.tasks.TASKS), looked up when validating, so a task added to the
    table is valid everywhere at once. Worded as error_message words a Literal: `allowed: 'sst2', ... or 'squad_v2'`."""
    if isinstance(value, str) and value in TASKS:
        return value
    names = [repr(name) for name in TASKS]
    expected = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
    raise ValueError(f"allowed: {expected}")


# The task names are the task table's (tunebench.tasks); the one list of method names is here.
TaskName = Annotated[str, PlainValidator(_known_task)]
Method = Literal["lora", "full"]
METHODS: tuple[str, ...] = get_args(Method)
LLAMA_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _fraction_or_count(v: float, unit: str) -> float:
    """A value in (0, 1) is a fraction; one >= 1 must be a whole number."""
    if v >= 1 and v != int(v):
        raise ValueError(f"must be a fraction in (0, 1) or a whole number of {unit}")
    return v


def steps_interval(steps: float, total_steps: int) -> int:
    """training.eval_steps as a number of steps: itself, or its fraction of the run rounded up (as
    transformers' TrainerState.compute_steps resolves it)."""
    return int(steps) if steps >= 1 else max(1, math.ceil(total_steps * steps))


def precision_conflict(precision: str, model_dtype: str, device: str | None = None) -> str | None:
    """Why model.dtype (the frozen weights' dtype) cannot go with training.precision, or None. `auto` precision
    is judged once it is resolved on a device (tunebench.precision.build_policy passes the resolved name)."""
    if model_dtype == "float16":
        return ("model.dtype = 'float16': fp16 training needs loss scaling, which tunebench does not use; "
                "use model.dtype=auto (or bfloat16) with training.precision=bf16-mixed (the default on a GPU)")
    if precision == "32-true" and model_dtype == "bfloat16":
        where = f" (training.precision=auto resolves to 32-true on {device})" if device else ""
        return f"model.dtype = 'bfloat16' needs bf16 compute: set training.precision=bf16-mixed{where}"
    if precision == "bf16-true" and model_dtype == "float32":
        return ("model.dtype = 'float32' with training.precision=bf16-true: every weight is bf16 there; "
                "use bf16-mixed for fp32 weights")
    return None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TinyModelConfig(_Strict):
    """A random LLaMA built in code (tests, demo): no download, seconds on a CPU."""

    hidden_size: int = Field(64, gt=0)
    num_hidden_layers: int = Field(2, gt=0)
    num_attention_heads: int = Field(4, gt=0)
    num_key_value_heads: int = Field(2, gt=0)
    intermediate_size: int = Field(128, gt=0)
    vocab_size: int | None = Field(None, ge=1)   # null = the tiny tokenizer's; larger for a real model's shape

    @model_validator(mode="after")
    def _heads_divide(self) -> TinyModelConfig:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError("hidden_size must be a multiple of num_attention_heads")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")
        return self


class ModelConfig(_Strict):
    name: str = "princeton-nlp/Sheared-LLaMA-1.3B"
    gguf_file: str | None = None
    max_length: int = Field(512, ge=16)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"   # frozen weights only (tunebench.precision)
    attn_implementation: Literal["sdpa", "eager"] = "sdpa"
    tiny: TinyModelConfig = TinyModelConfig()


class LoraConfig(_Strict):
    r: int = Field(16, ge=1)
    alpha: float = Field(32, gt=0)
    dropout: float = Field(0.1, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: list(LLAMA_PROJECTIONS), min_length=1)
    use_rslora: bool = False
    use_dora: bool = False

    def added_params(self, fan_in: int, fan_out: int) -> int:
        """Trainable parameters LoRA adds to one wrapped linear: A (r x in) and B (out x r), LoRA paper
        section 4; DoRA adds a magnitude vector of size out. The one formula for counting and planning."""
        return self.r * (fan_in + fan_out) + (fan_out if self.use_dora else 0)


class TrainingConfig(_Strict):
    num_train_epochs: float = Field(3, gt=0)
    max_steps: int = Field(-1, ge=-1)
    per_device_train_batch_size: int = Field(4, ge=1)
    per_device_eval_batch_size: int = Field(32, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    learning_rate: float = Field(2e-4, gt=0)
    full_finetune_learning_rate: float = Field(5e-5, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_ratio: float = Field(0.06, ge=0, lt=1)
    lr_scheduler_type: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "linear"
    max_grad_norm: float = Field(1.0, gt=0)
    eval_steps: float = Field(0.05, gt=0)
    logging_steps: int = Field(10, ge=1)
    save_total_limit: int = Field(2, ge=1)
    seed: int = Field(42, ge=0)
    deterministic: bool = True
    group_by_length: bool = True
    pad_to_multiple_of: int | None = Field(None, ge=1)
    early_stopping_patience: int | None = Field(None, ge=1)
    save_full_model: bool = False
    eval_train_examples: int = Field(512, ge=0)
    cpu_threads: int | None = Field(None, ge=1)
    # The Trainer's per-step shortcuts (tunebench.fast_paths): the stock Trainer's numbers, less time per step.
    trainer_fast_paths: bool = True
    # GPU path switches (docs/bench.md, "GPU path"); each is checked against what is installed and the device.
    gradient_checkpointing: bool = False
    torch_compile: bool = False
    liger_kernels: bool = False
    optim: Literal["adamw_torch", "adamw_torch_fused", "adamw_8bit"] = "adamw_torch_fused"
    # One policy for both arms (tunebench.precision): auto = bf16-mixed on CUDA, 32-true on CPU.
    precision: Literal["auto", "bf16-mixed", "32-true", "bf16-true"] = "auto"

    @field_validator("eval_steps")
    @classmethod
    def _steps_or_fraction(cls, v: float) -> float:
        v = _fraction_or_count(v, "steps")
        return int(v) if v >= 1 else v   # a step count stays an int (as before fractions were allowed: same run ids)


class QAConfig(_Strict):
    doc_stride: int = Field(128, ge=1)
    max_answer_length: int = Field(30, ge=1)
    n_best_size: int = Field(20, ge=1)


class TrackingConfig(_Strict):
    backend: Literal["wandb", "none"] = "wandb"
    mode: Literal["offline", "online"] = "offline"
    project: str = "NLP"
    entity: str | None = None
    group: str | None = None
    tags: list[str] = Field(default_factory=list)


class DataConfig(_Strict):
    source: Literal["builtin", "local", "hub"] = "builtin"
    dir: str = "data"
    glue_dir: str | None = None
    squad_dir: str | None = None
    max_train_examples: int | None = Field(None, ge=1)
    max_eval_examples: int | None = Field(None, ge=1)
    validation_size: float = Field(0.1, gt=0)
    split_seed: int = Field(42, ge=0)
    builtin_train_size: int = Field(1000, ge=10)
    builtin_test_size: int = Field(200, ge=10)

    @field_validator("validation_size")
    @classmethod
    def _fraction_or_examples(cls, v: float) -> float:
        return _fraction_or_count(v, "examples")


ARM_NAME_PATTERN = r"^[a-z][a-z0-9_]*$"     # an arm's name (tunebench.arms): lora_r64, dora_r16, full


class Config(_Strict):
    experiment: str = Field("default", min_length=1)
    output_dir: str = "results"
    task: TaskName = "sst2"
    method: Method = "lora"
    # the plan's name for the arm this run belongs to (tunebench.arms); None: the method's own arm. Not part of
    # the run's id (tunebench.results.NOT_COMPUTED): it names a computation, it does not change it
    arm: str | None = Field(None, pattern=ARM_NAME_PATTERN, max_length=40)
    reference: str | None = Field(None, pattern=ARM_NAME_PATTERN, max_length=40)   # the plan's reference arm
    model: ModelConfig = ModelConfig()
    lora: LoraConfig = LoraConfig()
    training: TrainingConfig = TrainingConfig()
    qa: QAConfig = QAConfig()
    tracking: TrackingConfig = TrackingConfig()
    data: DataConfig = DataConfig()

    @model_validator(mode="after")
    def _precision_and_dtype_agree(self) -> Config:
        """model.dtype (the frozen weights' dtype) must suit training.precision (tunebench.precision)."""
        problem = precision_conflict(self.training.precision, self.model.dtype)
        if problem:
            raise ValueError(problem)
        return self

    @model_validator(mode="after")
    def _doc_stride_below_max_length(self) -> Config:
        """qa.doc_stride is the overlap between a long context's windows (Hugging Face run_qa semantics), so it
        must be below the window: at or above an example's context budget (max_length less the question and
        special tokens) every window would advance by one token (348 windows for a 448-token context at
        max_length 128). Only QA encodes windows; tunebench.features checks each example's own budget."""
        if get_task(self.task).is_qa and self.qa.doc_stride >= self.model.max_length:
            raise ValueError(f"qa.doc_stride = {self.qa.doc_stride} must be below model.max_length = "
                             f"{self.model.max_length} (the overlap between windows of a long context)")
        return self

    @property
    def learning_rate(self) -> float:
        """Each method has its own learning rate (LoRA's best is about 10x full fine-tuning's)."""
        t = self.training
        return t.learning_rate if self.method == "lora" else t.full_finetune_learning_rate


# ---------------------------------------------------------------- loading


def parse_override(text: str) -> tuple[str, Any]:
    """`training.learning_rate=1e-4` -> ("training.learning_rate", 1e-4); the value is read as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise TunebenchError(f"override {text!r}: expected key=value, e.g. training.learning_rate=1e-4")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str) and _looks_numeric(value):
        value = float(value)  # YAML 1.1 reads '1e-4' as a string
    return key.strip(), value


def _looks_numeric(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def set_dotted(tree: dict, key: str, value: Any) -> None:
    node = tree
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise TunebenchError(f"override {key}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def get_dotted(tree: dict, key: str) -> Any:
    """tree["a"]["b"] for "a.b"; KeyError (or TypeError through a non-section) when absent."""
    node: Any = tree
    for part in key.split("."):
        node = node[part]
    return node


def pop_dotted(tree: dict, key: str) -> None:
    """Remove "a.b" from tree when present (a no-op otherwise)."""
    *parents, last = key.split(".")
    node: Any = tree
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(last, None)


def flatten_dotted(tree: dict, prefix: str = "") -> dict[str, Any]:
    """{"training": {"seed": 1}} -> {"training.seed": 1}: nested and dotted override styles mean the same."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten_dotted(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def deep_merge(base: dict, update: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def read_yaml(path: str | os.PathLike, what: str = "config file",
              top_level: str = "a mapping of config keys") -> dict:
    """A YAML mapping with numbers normalized; one-line errors naming the file (and line)."""
    path = Path(path)
    if not path.is_file():
        raise TunebenchError(f"{path}: {what} not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise TunebenchError(f"{path}{where}: invalid YAML ({getattr(e, 'problem', None) or e})") from None
    if data is None and what == "config file":
        return {}
    if not isinstance(data, dict):
        raise TunebenchError(f"{path}: expected {top_level} at the top level")
    return _normalize_numbers(data)  # YAML 1.1 reads 1e-4 as a string


def _normalize_numbers(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _normalize_numbers(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_normalize_numbers(v) for v in tree]
    if isinstance(tree, str) and _looks_numeric(tree) and any(c in tree.lower() for c in "e."):
        return float(tree)
    return tree


def validate_config(tree: dict, source: str = "config") -> Config:
    try:
        return Config.model_validate(tree)
    except ValidationError as e:
        raise TunebenchError(format_validation_error(e, source, tree)) from None


def error_message(err: dict) -> str:
    """One pydantic error's message as tunebench words it (config files and plan files alike)."""
    if err["type"] == "literal_error":
        return f"allowed: {err['ctx']['expected']}"
    return err["msg"].removeprefix("Value error, ")


def format_validation_error(e: ValidationError, source: str, tree: dict) -> str:
    err = e.errors()[0]
    key = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        return f"{source}: unknown key {key!r}"
    msg = error_message(err)
    if not key:                       # a rule across keys: its message names them
        return f"{source}: {msg}"
    try:
        value = get_dotted(tree, key) if key else tree
        return f"{source}: {key} = {value!r}: {msg}"
    except (KeyError, TypeError):
        return f"{source}: {key}: {msg}"


def load_config(files: list[str | os.PathLike] | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults <- each YAML file in order <- overrides. Errors name the file or the override."""
    tree: dict = Config().model_dump()
    last = "config"
    for f in files or []:
        update = read_yaml(f)
        tree = deep_merge(tree, update)
        last = str(f)
        _validate_keys(tree, last)
    for text in overrides or []:
        key, value = parse_override(text)
        set_dotted(tree, key, value)
        last = f"override {text}"
        _validate_keys(tree, last)
    return validate_config(tree, source=last)


def _validate_keys(tree: dict, source: str) -> None:
    """Each key's own rules, checked after every file and override so the error names the one that broke them.
    Rules across keys (qa.doc_stride below model.max_length, model.dtype with training.precision) wait for the
    end: `task=squad_v2 model.max_length=128 qa.doc_stride=32` is valid although its first two steps are not."""
    try:
        Config.model_validate(tree)
    except ValidationError as e:
        if any(err["loc"] for err in e.errors()):
            raise TunebenchError(format_validation_error(e, source, tree)) from None


def with_overrides(cfg: Config, updates: dict[str, Any]) -> Config:
    """A copy of `cfg` with dotted-key updates, validated (plans and sweeps use this)."""
    tree = cfg.model_dump()
    for key, value in updates.items():
        set_dotted(tree, key, value)
    return validate_config(tree, source="overrides " + ", ".join(f"{k}={v}" for k, v in updates.items()))


def dump_yaml(cfg: Config) -> str:
    return yaml.safe_dump(cfg.model_dump(), sort_keys=False)
