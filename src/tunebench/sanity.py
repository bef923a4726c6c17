"""The study's seven sanity checks, each able to fail (and tested to fail) on the fault it exists for.

1 model loading  2 LoRA setup  3 data loading  4 gradient flow  5 overfitting  6 W&B logging  7 reproducibility

The inspecting functions (`inspect_*`) take models and values and return a CheckResult, so a test can hand
them a deliberately broken model; the `check_*` functions build what they inspect from a config.
From Python: `ModelSanityChecker(cfg).check_lora_setup()` (the original plan's API) or `run_checks(cfg, ...)`.
"""

from __future__ import annotations

import contextlib
import copy
import re
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import TrainerCallback

from tunebench.config import Config, with_overrides
from tunebench.data.tasks import TaskSpec, get_task
from tunebench.errors import TunebenchError
from tunebench.methods import apply_method, expected_lora_trainable, head_name, wrapped_linears
from tunebench.precision import ComputeDtypeProbe, PrecisionPolicy, apply_policy, measured_precision, resolve_policy

CHECKS = ("model_loading", "lora_setup", "data_loading", "gradient_flow", "overfitting", "wandb_logging",
          "reproducibility")
PREFLIGHT = ("model_loading", "lora_setup", "gradient_flow")


@dataclass
class CheckResult:
    check: str
    method: str          # lora | full | "-" when the check does not depend on the method
    passed: bool
    figure: str          # the number behind the verdict
    detail: str = ""     # what is wrong, naming the fault
    skipped: bool = False   # not run (its prerequisite failed, or its package is absent): neither pass nor fail
    precision: dict | None = None   # gradient_flow: the dtypes this arm trains with (precision_parity compares)

    def as_dict(self) -> dict:
        return asdict(self)


def _fail(check: str, method: str, figure: str, detail: str) -> CheckResult:
    return CheckResult(check, method, False, figure, detail)


def _skip(check: str, method: str, why: str) -> CheckResult:
    return CheckResult(check, method, False, f"skipped: {why}", skipped=True)


# ---------------------------------------------------------------- helpers


class ModelSource:
    """The checkpoint the checks of one `run_checks` call share: read from disk once, each check gets its own
    deep copy, and `close()` drops it (a 1.3B model must not stay on the GPU beside the run's own). A model that
    cannot be loaded is tried once: the error is kept and every later request raises it again at once."""

    def __init__(self, copies: bool = True):
        self.copies = copies      # False: hand out the loaded model itself (one check on its own)
        self._key: tuple | None = None
        self._loaded: tuple | None = None
        self._error: TunebenchError | None = None

    def load(self, cfg: Config, task: TaskSpec):
        """(tokenizer, a fresh copy of the task model) on this machine's device, in the policy's dtype."""
        from transformers import set_seed

        from tunebench.model import load_model, load_tokenizer, resolve_device
        from tunebench.train import set_cpu_threads

        m = cfg.model
        key = (m.name, m.gguf_file, m.dtype, m.attn_implementation, m.max_length, m.tiny, cfg.training.precision,
               task.name, cfg.training.seed)
        if key != self._key:
            self.close()
            self._key = key
            try:
                tokenizer = load_tokenizer(cfg)
                set_seed(cfg.training.seed)
                device = resolve_device()
                model = load_model(cfg, task, tokenizer, device=device)
            except Exception as e:  # noqa: BLE001 -- any load failure is the finding, remembered for later checks
                from tunebench.system import exception_line, first_line

                self._error = TunebenchError(first_line(e) if isinstance(e, TunebenchError) else exception_line(e))
                raise self._error from None
            set_cpu_threads(cfg, sum(p.numel() for p in model.parameters()), device)
            self._loaded = (tokenizer, model)
        if self._error is not None:
            raise self._error
        tokenizer, model = self._loaded
        if not self.copies:
            self.close()
            return tokenizer, model
        return tokenizer, self.model_copy(model)

    @property
    def failed(self) -> TunebenchError | None:
        return self._error

    @staticmethod
    def model_copy(model: torch.nn.Module) -> torch.nn.Module:
        return copy.deepcopy(model)

    def close(self) -> None:
        self._key = self._loaded = self._error = None
        import gc

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _load(cfg: Config, task: TaskSpec, source: ModelSource | None = None):
    """Tokenizer and a fresh copy of the task model, from `source` (shared by one run of the checks) or, for a
    single check called on its own, from a source that lives as long as this call."""
    return (source or ModelSource(copies=False)).load(cfg, task)


def _batch(cfg: Config, task: TaskSpec, tokenizer, n: int, split: str = "train") -> dict:
    """n examples of the task as one padded batch (labels included)."""
    from transformers import DataCollatorWithPadding

    from tunebench.data import load_task_splits
    from tunebench.features import encode, model_columns

    records = load_task_splits(cfg, task.name)[split].select(range(n)).to_list()
    feats = model_columns(encode(task, records, tokenizer, cfg.model.max_length, cfg.qa.doc_stride))[:n]
    for f in feats:
        f.pop("length", None)
    return dict(DataCollatorWithPadding(tokenizer)(feats))


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _forward(model, batch: dict, policy: PrecisionPolicy | None = None):
    """The model on the batch, under the precision policy's autocast when given (as the Trainer runs it)."""
    dev = _device_of(model)
    with policy.autocast_context(dev.type) if policy is not None else contextlib.nullcontext():
        return model(**{k: v.to(dev) for k, v in batch.items()})


def _policy(cfg: Config) -> PrecisionPolicy:
    from tunebench.model import resolve_device

    return resolve_policy(cfg, resolve_device())


def _logits(out) -> torch.Tensor:
    return out.logits if hasattr(out, "logits") and out.logits is not None else torch.stack(
        [out.start_logits, out.end_logits], -1)


# ---------------------------------------------------------------- 1 model loading


def inspect_model_loading(model, tokenizer, task: TaskSpec, batch: dict,
                          policy: PrecisionPolicy | None = None) -> CheckResult:
    name = "model_loading"
    if tokenizer.pad_token_id is None:
        return _fail(name, "-", "pad token: none", "tokenizer has no pad token")
    if model.config.pad_token_id != tokenizer.pad_token_id:
        return _fail(name, "-", f"pad id {model.config.pad_token_id}",
                     f"model config pad_token_id {model.config.pad_token_id} != tokenizer's {tokenizer.pad_token_id}")
    with torch.no_grad():
        logits = _logits(_forward(model, batch, policy))
    bsz, seq = batch["input_ids"].shape
    want = (bsz, task.num_labels) if not task.is_qa else (bsz, seq, 2)
    if tuple(logits.shape) != want:
        return _fail(name, "-", f"shape {tuple(logits.shape)}", f"logits shape {tuple(logits.shape)}, expected {want}")
    if not torch.isfinite(logits).all():
        return _fail(name, "-", "non-finite logits", "forward pass gave NaN or inf logits")
    return CheckResult(name, "-", True, f"logits {tuple(logits.shape)} finite; pad id {tokenizer.pad_token_id}")


def check_model_loading(cfg: Config, task: TaskSpec, source: ModelSource | None = None) -> CheckResult:
    try:
        tokenizer, model = _load(cfg, task, source)
    except (TunebenchError, OSError, ValueError, RuntimeError) as e:
        return _fail("model_loading", "-", "load failed", str(e).splitlines()[0])
    return inspect_model_loading(model, tokenizer, task, _batch(cfg, task, tokenizer, 4), _policy(cfg))


# ---------------------------------------------------------------- 2 LoRA setup


def inspect_lora_setup(model, cfg: Config, task: TaskSpec, batch: dict, base_logits: torch.Tensor,
                       expected: int, want: set[str], n_layers: int,
                       policy: PrecisionPolicy | None = None) -> CheckResult:
    """`want`: the base model's linears that the target modules name, listed before PEFT wrapped them."""
    from peft.tuners.lora import LoraLayer

    name = "lora_setup"
    wrapped = {n.removeprefix("base_model.model."): m for n, m in model.named_modules() if isinstance(m, LoraLayer)}
    targets = set(cfg.lora.target_modules)
    missing = sorted(want - set(wrapped))
    if not wrapped:
        return _fail(name, "lora", "0 wrapped modules", "LoRA wraps no module (target_modules match nothing)")
    if missing:
        return _fail(name, "lora", f"{len(wrapped)}/{len(want)} wrapped",
                     f"not wrapped: {', '.join(missing[:6])}{' ...' if len(missing) > 6 else ''}")
    layers = _layers_per_module(wrapped)
    short = {m: n for m, n in layers.items() if n != n_layers}
    if set(layers) != targets or short:
        return _fail(name, "lora", f"modules {sorted(layers)}",
                     f"expected {sorted(targets)} in all {n_layers} layers, got {layers}")
    frozen_head = _frozen_head(model, head_name(task))
    if frozen_head:
        return _fail(name, "lora", "head frozen", f"task head {head_name(task)!r} is frozen: {', '.join(frozen_head)}")
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    stray = [n for n in trainable if "lora_" not in n and head_name(task) not in n]
    if stray:
        return _fail(name, "lora", f"{len(stray)} stray trainable", f"trainable outside LoRA and head: {stray[:4]}")
    n_trainable = sum(p.numel() for p in trainable.values())
    if n_trainable != expected:
        return _fail(name, "lora", f"trainable {n_trainable:,} != formula {expected:,}",
                     "trainable parameter count differs from sum r*(d_in+d_out) + head")
    with torch.no_grad():
        model.eval()
        diff = (_logits(_forward(model, batch, policy)).float() - base_logits.float().to(_device_of(model))
                ).abs().max().item()
    if diff > 1e-5:
        return _fail(name, "lora", f"max |diff| {diff:.2e}",
                     "LoRA output differs from the base model at init (B != 0?)")
    return CheckResult(name, "lora", True, f"{len(layers)} modules x {n_layers} layers; trainable {n_trainable:,} = "
                       f"formula; init diff {diff:.1e}")


def _frozen_head(model, head: str) -> list[str]:
    """Head parameters that will not train (for PEFT, the trainable copy in modules_to_save)."""
    params = [(n, p) for n, p in model.named_parameters() if f"{head}." in n and "original_module" not in n]
    return [n for n, p in params if not p.requires_grad]


def _layers_per_module(wrapped: dict) -> dict[str, int]:
    out: dict[str, set] = {}
    for n in wrapped:
        parts = n.split(".")
        layer = next((p for p in parts if p.isdigit()), "?")
        out.setdefault(parts[-1], set()).add(layer)
    return {k: len(v) for k, v in sorted(out.items())}


def check_lora_setup(cfg: Config, task: TaskSpec, source: ModelSource | None = None) -> CheckResult:
    cfg = with_overrides(cfg, {"method": "lora"})
    tokenizer, base = _load(cfg, task, source)
    batch = _batch(cfg, task, tokenizer, 4)
    policy = _policy(cfg)
    base.eval()
    with torch.no_grad():
        base_logits = _logits(_forward(base, batch, policy))
    expected = expected_lora_trainable(base, cfg, task)
    want = set(wrapped_linears(base, cfg.lora.target_modules))
    n_layers = base.config.num_hidden_layers
    try:
        model = apply_policy(apply_method(base, cfg, task), policy)
    except (TunebenchError, ValueError) as e:  # target modules that match no layer
        return _fail("lora_setup", "lora", "modules not found", str(e).splitlines()[0])
    return inspect_lora_setup(model, cfg, task, batch, base_logits, expected, want, n_layers, policy)


# ---------------------------------------------------------------- 3 data loading


def check_data_loading(cfg: Config, tasks: list[str]) -> CheckResult:
    """Every requested task loads and passes `data validate`."""
    from tunebench.data.sources import validate_loaded_task

    name = "data_loading"
    sizes = []
    for t in tasks:
        try:
            findings, _, splits = validate_loaded_task(cfg, t)
        except TunebenchError as e:
            return _fail(name, "-", f"{t}: not loaded", str(e))
        errors = [f for f in findings if f.level == "error"]
        if errors:
            e = errors[0]
            return _fail(name, "-", f"{t}: {len(errors)} errors", f"{t} {e.split} {e.check}: {e.message}")
        sizes.append(f"{t} {'/'.join(str(len(splits[s])) for s in ('train', 'validation', 'test'))}")
    return CheckResult(name, "-", True, "; ".join(sizes) + " (train/val/test)")


# ---------------------------------------------------------------- 4 gradient flow


def inspect_gradient_flow(model, batch: dict, method: str, head: str, policy: PrecisionPolicy | None = None,
                          optimizer_factory=None) -> CheckResult:
    """Every trainable tensor gets a finite non-zero gradient, no frozen one gets any. With a policy, the
    forward runs under it and the result records the arm's precision (trainable dtype, the dtype the matmuls
    ran in, and, when `optimizer_factory(params)` is given, the state dtype after one optimizer step)."""
    name = "gradient_flow"
    frozen_head = _frozen_head(model, head)
    if frozen_head:
        return _fail(name, method, "head frozen", f"task head {head!r} is frozen: {', '.join(frozen_head)}")
    model.train()
    model.zero_grad(set_to_none=True)
    probe = ComputeDtypeProbe(model)
    try:
        _forward(model, batch, policy).loss.backward()
    finally:
        probe.remove()
    bad, frozen_with_grad, n_ok = [], [], 0
    for n, p in model.named_parameters():
        if not p.requires_grad:
            if p.grad is not None:
                frozen_with_grad.append(n)
            continue
        if p.grad is None or not torch.isfinite(p.grad).all() or (p.grad.abs().max() == 0
                                                                    and not zero_gradient_by_construction(n)):
            bad.append(n)
        else:
            n_ok += 1
    precision = None
    if policy is not None:
        optimizer = None
        if optimizer_factory is not None and n_ok:
            optimizer = optimizer_factory([p for p in model.parameters() if p.requires_grad])
            optimizer.step()
        precision = measured_precision(policy, model, optimizer, probe.dtype)
        precision.pop("frozen_dtype")      # parity is about what trains; frozen weights differ by design
        del optimizer
    model.zero_grad(set_to_none=True)
    result = _gradient_verdict(name, method, n_ok, bad, frozen_with_grad)
    result.precision = precision
    return result


def zero_gradient_by_construction(name: str) -> bool:
    """The span head's bias: it adds the same value to every position's start (end) logit, and a softmax over
    positions is invariant to that shift, so its gradient is exactly zero up to rounding (it may be 0.0)."""
    return re.search(r"qa_outputs\.(modules_to_save\.[^.]+\.)?bias$", name) is not None


def _gradient_verdict(name: str, method: str, n_ok: int, bad: list[str], frozen_with_grad: list[str]) -> CheckResult:
    if not n_ok and not bad:
        return _fail(name, method, "0 trainable", "no trainable parameter")
    if bad:
        return _fail(name, method, f"{len(bad)} without gradient",
                     f"trainable but no finite non-zero gradient: {', '.join(bad[:4])}{' ...' if len(bad) > 4 else ''}")
    if frozen_with_grad:
        return _fail(name, method, f"{len(frozen_with_grad)} frozen with gradient", ", ".join(frozen_with_grad[:4]))
    return CheckResult(name, method, True, f"{n_ok} trainable tensors with finite non-zero gradients")


def check_gradient_flow(cfg: Config, task: TaskSpec, source: ModelSource | None = None) -> CheckResult:
    tokenizer, model = _load(cfg, task, source)
    batch = _batch(cfg, task, tokenizer, 8)
    policy = _policy(cfg)
    torch.manual_seed(cfg.training.seed)
    model = apply_policy(apply_method(model, cfg, task), policy)
    nonzero_lora_b(model)
    return inspect_gradient_flow(model, batch, cfg.method, head_name(task), policy, run_optimizer(cfg, task))


def run_optimizer(cfg: Config, task: TaskSpec):
    """A factory of the optimizer a run of this config trains with (the Trainer's own choice from the training
    arguments, or the precision policy's compensating AdamW), for reading its state dtype."""
    from transformers import Trainer

    from tunebench.model import resolve_device
    from tunebench.train import build_training_args, policy_optimizer

    device = resolve_device()
    with tempfile.TemporaryDirectory(prefix="tunebench-optim-") as tmp:
        args = build_training_args(cfg, task, Path(tmp), device)
    cls, kwargs = policy_optimizer(_policy(cfg), args) or Trainer.get_optimizer_cls_and_kwargs(args)
    return lambda params: cls(params, **kwargs)


def inspect_precision_parity(results: list[CheckResult]) -> CheckResult:
    """Both arms train under the same policy: the same trainable-parameter, optimizer-state and compute dtypes
    (from the gradient-flow checks, which build each arm as a run does)."""
    name = "precision_parity"
    arms = {r.method: r.precision for r in results if r.check == "gradient_flow" and r.precision}
    if len(arms) < 2:
        return _skip(name, "-", "needs both methods' gradient-flow checks")
    keys = ("trainable_dtype", "optimizer_state_dtype", "compute_dtype")
    differ = [k for k in keys if len({a.get(k) for a in arms.values()}) > 1]
    shown = "; ".join(f"{m}: " + "/".join(str(a.get(k)) for k in keys) for m, a in sorted(arms.items()))
    if differ:
        return _fail(name, "-", shown, f"the arms train under different precision ({', '.join(differ)} differ): "
                     "the comparison would be biased")
    mixed = [k for a in arms.values() for k in keys if str(a.get(k)).startswith("mixed")]
    if mixed:
        return _fail(name, "-", shown, f"mixed dtypes within an arm ({', '.join(sorted(set(mixed)))})")
    a = next(iter(arms.values()))
    return CheckResult(name, "-", True, f"{a['name']}: trainable {a['trainable_dtype']}, optimizer state "
                       f"{a['optimizer_state_dtype']}, compute {a['compute_dtype']} in both arms")


def nonzero_lora_b(model) -> None:
    """At init LoRA B = 0, so A gets zero gradient; one tiny step on B (as after the first optimizer step)
    lets the check see gradients reach both A and B."""
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.add_(torch.randn_like(p) * 1e-3)


# ---------------------------------------------------------------- 5 overfitting


def check_overfitting(cfg: Config, task: TaskSpec, n_examples: int = 32, max_steps: int = 300,
                      loss_target: float = 0.05, lr_multipliers: tuple[float, ...] = (10.0, 3.0, 1.0),
                      source: ModelSource | None = None) -> CheckResult:
    """Drive the loss on one fixed batch close to zero (Karpathy's "overfit one batch") at the method's learning
    rate times 10, 3 or 1 (the first that works; a rate already tuned high can overshoot at 10x), through the
    engine a run trains with (overfit_batch): a fault anywhere on the training path (the model, the method, the
    collator, the labels the Trainer passes, the optimizer it builds) fails it."""
    tokenizer, base = _load(cfg, task, source)
    batch = _batch(cfg, task, tokenizer, n_examples)
    policy = _policy(cfg)
    tried = []
    for mult in lr_multipliers:
        steps, loss, acc = overfit_batch(copy.deepcopy(base), cfg, task, tokenizer, batch, cfg.learning_rate * mult,
                                         max_steps, loss_target, policy)
        if steps is not None:
            return CheckResult("overfitting", cfg.method, True,
                               f"loss {loss:.4f}, accuracy 100% after {steps} steps at lr {cfg.learning_rate * mult:g}")
        tried.append(f"lr {cfg.learning_rate * mult:g}: loss {loss:.3f}, accuracy {100 * acc:.0f}%")
    return _fail("overfitting", cfg.method, f"after {max_steps} steps: " + "; ".join(tried),
                 f"cannot overfit {n_examples} examples: training is broken (frozen head? lr? data?)")


def overfit_config(cfg: Config, lr: float, n_examples: int, max_steps: int) -> Config:
    """The run's config, made a probe of one batch: all `n_examples` in every step (no accumulation), at most
    `max_steps` steps at a constant `lr` (no warm-up, no decay: the probe is "at this rate"), no validation,
    checkpoint or early stopping inside. Everything else is the run's: optimizer, weight decay, gradient
    clipping, precision, collator, Trainer class and switches."""
    rate = "training.learning_rate" if cfg.method == "lora" else "training.full_finetune_learning_rate"
    return with_overrides(cfg, {rate: lr, "training.per_device_train_batch_size": n_examples,
                                "training.gradient_accumulation_steps": 1, "training.max_steps": max_steps,
                                "training.eval_steps": max_steps + 1, "training.logging_steps": max_steps + 1,
                                "training.warmup_ratio": 0.0, "training.lr_scheduler_type": "constant",
                                "training.early_stopping_patience": None})


def overfit_batch(model, cfg: Config, task: TaskSpec, tokenizer, batch: dict, lr: float, max_steps: int,
                  loss_target: float, policy: PrecisionPolicy | None = None) -> tuple[int | None, float, float]:
    """Train `model` (before the method transform: the method and the precision policy are applied here, seeded
    as a run seeds them, dropout off) on one batch through the engine a run trains with (train.build_engine on
    overfit_config's config): (steps to reach the target loss with 100% batch accuracy, or None; last loss; last
    accuracy). Loss and accuracy are those of each step's own forward pass, before its update (OverfitWatch).
    The process-wide torch settings the Trainer changes (deterministic algorithms) are restored afterwards."""
    from tunebench.features import Split
    from tunebench.train import build_engine, torch_settings_kept

    policy = policy or _policy(cfg)
    torch.manual_seed(cfg.training.seed)
    model = apply_policy(apply_method(model, cfg, task), policy)
    _disable_dropout(model)
    features = batch_features(batch)
    records = [] if task.is_qa else [{"label": f["labels"]} for f in features]
    split = Split(records, features)
    watch = OverfitWatch(model, loss_target)
    try:
        with tempfile.TemporaryDirectory(prefix="tunebench-overfit-") as tmp, torch_settings_kept():
            engine = build_engine(overfit_config(cfg, lr, len(features), max_steps), task, tokenizer,
                                  split.dataset(), split, Path(tmp), policy, device=_device_of(model).type,
                                  callbacks=[watch], model=model)
            engine.trainer.train()
    finally:
        watch.remove()
    return watch.reached, watch.loss, watch.accuracy


def batch_features(batch: dict) -> list[dict]:
    """A collated batch (tensors of equal-length rows) back into features, as a split holds them."""
    n = len(batch["input_ids"])
    features = [{k: v[i].tolist() for k, v in batch.items()} for i in range(n)]
    for f in features:
        f["length"] = int(sum(f["attention_mask"]))
    return features


class OverfitWatch(TrainerCallback):
    """The overfitting probe's eyes on the Trainer: a forward hook on the model reads each training step's own
    forward pass (its loss and batch accuracy, before the step's update, as a hand-written loop reads them) and
    the training stops at the end of the first step whose loss is under `loss_target` with 100% accuracy
    (`reached`: that step). No evaluation or checkpoint: a probe writes nothing."""

    def __init__(self, model: torch.nn.Module, loss_target: float):
        self.loss_target = loss_target
        self.loss, self.accuracy = float("nan"), 0.0
        self.reached: int | None = None
        self._hook = model.register_forward_hook(self._read, with_kwargs=True)

    def _read(self, module, args, kwargs, out) -> None:
        if module.training and getattr(out, "loss", None) is not None:
            self.loss, self.accuracy = out.loss.item(), _batch_accuracy(out, kwargs)

    def on_step_end(self, args, state, control, **kwargs):
        control.should_save = control.should_evaluate = False      # not even after the last step
        if self.reached is None and self.loss < self.loss_target and self.accuracy == 1.0:
            self.reached = state.global_step
            control.should_training_stop = True
        return control

    def remove(self) -> None:
        self._hook.remove()


def _disable_dropout(model) -> None:
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0


def _batch_accuracy(out, batch: dict) -> float:
    """The share of the batch predicted right (the labels wherever the batch lies)."""
    if batch.get("labels") is not None:
        return (out.logits.argmax(-1).cpu() == batch["labels"].cpu()).float().mean().item()
    hit = (out.start_logits.argmax(-1).cpu() == batch["start_positions"].cpu()) & \
          (out.end_logits.argmax(-1).cpu() == batch["end_positions"].cpu())
    return hit.float().mean().item()


# ---------------------------------------------------------------- 6 W&B logging


def check_wandb_logging(cfg: Config, folder: str | Path | None = None) -> CheckResult:
    """Create an offline run in a temporary folder, log known values, read them back from its run files."""
    import importlib.util

    name = "wandb_logging"
    if importlib.util.find_spec("wandb") is None:
        if cfg.tracking.backend == "wandb":    # the runs would be refused: that is a failure, not a skip
            return _fail(name, "-", "wandb not installed", "tracking.backend=wandb needs the wandb package "
                         "(pip install 'tunebench[wandb]'), or set tracking.backend=none")
        return _skip(name, "-", "wandb not installed")
    from tunebench.tracking import WandbTracker, read_finished_wandb_file

    logged = {1: 0.75, 2: 0.5, 3: 0.25}
    with tempfile.TemporaryDirectory(prefix="tunebench-wandb-") as tmp:
        where = Path(folder) if folder is not None else Path(tmp)
        offline = with_overrides(cfg, {"tracking.backend": "wandb", "tracking.mode": "offline",
                                       "experiment": "sanity"})
        try:
            tracker = WandbTracker(offline, where, f"sanity-{int(time.time() * 1000)}")
            for step, v in logged.items():
                tracker.log({"sanity/loss": v}, step=step)
            tracker.summary({"sanity/final": 42})
            tracker.finish()
        except Exception as e:  # noqa: BLE001 -- any failure to create or write the run is the finding
            return _fail(name, "-", "run not created", f"{where}: {type(e).__name__}: {str(e).splitlines()[0]}")
        files = sorted(where.glob("wandb/offline-run-*/run-*.wandb"))
        if not files:
            return _fail(name, "-", "no run file", f"{where}: no offline run file written")
        records = read_finished_wandb_file(files[-1])
    got = {r["_step"]: r["sanity/loss"] for kind, r in records if kind == "history" and "sanity/loss" in r}
    summary = {k: v for kind, r in records if kind == "summary" for k, v in r.items()}
    if got != logged or summary.get("sanity/final") != 42:
        return _fail(name, "-", f"read back {got}",
                     f"logged {logged}, read back {got} (summary {summary.get('sanity/final')})")
    return CheckResult(name, "-", True, f"{len(got)} history rows and the summary read back exactly")


# ---------------------------------------------------------------- 7 reproducibility


def check_reproducibility(cfg: Config, steps: int = 8) -> CheckResult:
    """Two short runs with the same seed: identical losses and metrics; another seed: different ones."""
    name = "reproducibility"
    # Identical runs need identical metrics on any examples: a seeded 64 of validation and test keep the check
    # about as cheap as its 8 steps on a real checkpoint (the whole SST-2 test set is 872 forward passes).
    short = {"training.max_steps": steps, "training.eval_steps": steps, "training.logging_steps": 1,
             "tracking.backend": "none", "training.eval_train_examples": 0, "data.max_eval_examples": 64}
    a = _short_run(with_overrides(cfg, short))
    b = _short_run(with_overrides(cfg, short))
    c = _short_run(with_overrides(cfg, {**short, "training.seed": cfg.training.seed + 1}))
    if a != b:
        first = next(i for i, (x, y) in enumerate(zip(a["losses"], b["losses"], strict=False)) if x != y) \
            if a["losses"] != b["losses"] else None
        where = f"losses differ from step {first + 1}" if first is not None else "metrics differ"
        return _fail(name, cfg.method, where, "same seed, different results: nondeterministic data order or kernels")
    if a == c:
        return _fail(name, cfg.method, "seed ignored", "a different seed gave identical results")
    return CheckResult(name, cfg.method, True, f"{steps} steps: identical losses for seed {cfg.training.seed}; "
                       f"seed {cfg.training.seed + 1} differs")


def _short_run(cfg: Config) -> dict:
    from tunebench.io import read_jsonl
    from tunebench.tracking import NullTracker
    from tunebench.train import train_and_evaluate

    with tempfile.TemporaryDirectory(prefix="tunebench-repro-") as tmp:
        res = train_and_evaluate(cfg, Path(tmp), NullTracker(), resume=False)
        losses = [r["loss"] for r in read_jsonl(Path(tmp) / "log.jsonl") if "loss" in r]
    return {"losses": losses, "test": {k: v for k, v in res.fields["test"].items()}}


# ---------------------------------------------------------------- running them


def run_checks(cfg: Config, tasks: list[str] | None = None, methods: list[str] | None = None,
               checks: tuple[str, ...] = CHECKS) -> list[CheckResult]:
    """The checks in order, for each method where they depend on it. The checkpoint is read once and freed at
    the end; when it cannot be loaded, model_loading fails once and the checks that need it are skipped. With
    both methods' gradient-flow checks, a `precision_parity` row compares the arms' precision."""
    tasks = tasks or [cfg.task]
    methods = methods or ["lora", "full"]
    task = get_task(tasks[0])
    base = with_overrides(cfg, {"task": task.name})
    source = ModelSource()
    per_method = {"gradient_flow": check_gradient_flow,
                  "overfitting": lambda c, t, s: check_overfitting(c, t, source=s),
                  "reproducibility": lambda c, _t, _s: check_reproducibility(c)}
    results: list[CheckResult] = []
    try:
        for check in checks:
            if check == "data_loading":
                results.append(_guard(check, "-", check_data_loading, base, tasks))
            elif check == "wandb_logging":
                results.append(_guard(check, "-", check_wandb_logging, base))
            elif check == "model_loading":
                results.append(_guard(check, "-", check_model_loading, base, task, source)
                               if source.failed is None else _unloadable(check, "-", source))
            elif check == "lora_setup" and "lora" in methods:
                results.append(_guard(check, "lora", check_lora_setup, base, task, source)
                               if source.failed is None else _unloadable(check, "lora", source))
            elif check in per_method:
                for m in methods:
                    results.append(_guard(check, m, per_method[check], with_overrides(base, {"method": m}), task,
                                          source) if source.failed is None else _unloadable(check, m, source))
                if check == "gradient_flow" and len(set(methods)) > 1:
                    results.append(inspect_precision_parity(results))
    finally:
        source.close()
    return results


def _unloadable(check: str, method: str, source: ModelSource) -> CheckResult:
    """A check that needs the model, which could not be loaded (model_loading names why, once)."""
    if check == "model_loading":
        return _fail(check, method, "load failed", str(source.failed))
    return _skip(check, method, "the model could not be loaded (see model_loading)")


def _guard(check: str, method: str, fn, *args) -> CheckResult:
    """A check that crashes has failed, with the exception as its detail (never a traceback mid-table)."""
    try:
        return fn(*args)
    except Exception as e:  # noqa: BLE001
        return _fail(check, method, "error", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")


def preflight(cfg: Config) -> None:
    """The fast subset `tunebench run` performs before training; raises when any check fails."""
    results = run_checks(cfg, [cfg.task], [cfg.method], PREFLIGHT)
    failed = [r for r in results if not (r.passed or r.skipped)]
    if failed:
        r = failed[0]
        raise TunebenchError(f"pre-flight check {r.check} ({r.method}) failed: {r.figure}: {r.detail}")


class ModelSanityChecker:
    """The original plan's API: `ModelSanityChecker().check_lora_setup()` and friends."""

    def __init__(self, cfg: Config | None = None, task: str | None = None):
        self.cfg = cfg or Config()
        self.task = get_task(task or self.cfg.task)

    def check_model_loading(self) -> CheckResult:
        return check_model_loading(self.cfg, self.task)

    def check_lora_setup(self) -> CheckResult:
        return check_lora_setup(self.cfg, self.task)

    def check_gradient_flow(self, method: str = "lora") -> CheckResult:
        return check_gradient_flow(with_overrides(self.cfg, {"method": method}), self.task)

    def check_overfitting(self, method: str = "lora") -> CheckResult:
        return check_overfitting(with_overrides(self.cfg, {"method": method}), self.task)

    def run_all(self) -> list[CheckResult]:
        return run_checks(self.cfg, [self.task.name])


def all_passed(results: list[CheckResult]) -> bool:
    """Every check passed or was skipped for an absent optional package; a check skipped because the model
    could not be loaded comes with a failed model_loading row."""
    return all(r.passed or r.skipped for r in results)
