"""Plan files: which runs an experiment consists of, read from YAML and validated with one-line errors.

    name: phase2a                    # required: final runs go to <output_dir>/<name>/, sweep runs to <name>-sweep/
    description: LoRA vs full fine-tuning on every task
    config: [../experiments/x.yaml]  # config files merged in order; relative paths are relative to THIS file
    overrides:                       # dotted config keys applied to every run
      training.num_train_epochs: 3
    task_overrides:                  # optional: dotted keys for one task's runs only (on top of `overrides`)
      squad_v2: {training.max_steps: 600}
    tasks: [sst2, mrpc, rte, squad_v2]   # default: every task of the task table (tunebench.tasks)
    methods: [lora, full]                # default: both, one arm each, named by the method
    arms:                                # optional, instead of methods: named arms (tunebench.arms)
      full: {method: full}
      lora_r64: {method: lora, lora.r: 64, lora.alpha: 128}
      dora_r16: {method: lora, lora.use_dora: true}
    reference: full                      # the arm the others are compared with (default: full)
    seeds: [42, 43, 44, 45, 46]          # the final stage's seeds (default: these five)
    task_seeds:                          # optional: one task's final seeds instead (e.g. a costlier task)
      rte: [42, 43, 44]
    grid:                                # {key: [values]} for every arm, or sections per arm or method
      lora: {training.learning_rate: [1.0e-4, 2.0e-4, 5.0e-4]}
      full: {training.full_finetune_learning_rate: [1.0e-5, 2.0e-5, 5.0e-5]}
    sweep:                               # optional: two stages (see tunebench.plan)
      seeds: [42]                        # default: [42]

Each run's config, last wins: schema defaults <- the plan's `config` files <- its `overrides` <- its
`task_overrides` for the run's task <- the command line's --config files and key=value overrides <- the arm's
settings <- the grid point <- task, method, seed, arm and experiment.

A grid section named like an arm is that arm's; one named like a method (and no arm) is every arm of that
method without a section of its own. A key an arm sets may not be swept, overridden per task or set on the
command line: the arm is defined by it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from tunebench.arms import ARM_NAME, Arm, arm_key_problem, default_arms, reference_of
from tunebench.config import (
    METHODS,
    Config,
    Method,
    TaskName,
    deep_merge,
    error_message,
    flatten_dotted,
    parse_override,
    read_yaml,
    set_dotted,
    validate_config,
)
from tunebench.errors import TunebenchError
from tunebench.results import is_ignored
from tunebench.tasks import task_names

DEFAULT_SEEDS = (42, 43, 44, 45, 46)
DEFAULT_SWEEP_SEEDS = (42,)
SWEEP_SUFFIX = "-sweep"

# Keys a plan sets itself (tasks/methods/seeds/name): a grid or an override may not touch them.
_SET_BY_PLAN = {"task": "tasks", "method": "methods", "training.seed": "seeds", "experiment": "name",
                "arm": "arms", "reference": "reference"}

Seed = Annotated[StrictInt, Field(ge=0)]


def _no_duplicates(values: list) -> list:
    dupes = sorted({str(v) for v in values if values.count(v) > 1})
    if dupes:
        raise ValueError(f"duplicate entries: {', '.join(dupes)}")
    return values


class SweepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seeds: list[Seed] = Field(default_factory=lambda: list(DEFAULT_SWEEP_SEEDS), min_length=1)

    @field_validator("seeds")
    @classmethod
    def _unique(cls, v: list) -> list:
        return _no_duplicates(v)


class PlanSpec(BaseModel):
    """The file's schema. Grid axes are checked separately (their keys are config keys)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=100)
    description: str = ""
    config: list[str] = Field(default_factory=list)
    overrides: dict[str, Any] = Field(default_factory=dict)
    task_overrides: dict[TaskName, dict[str, Any]] = Field(default_factory=dict)
    tasks: list[TaskName] = Field(default_factory=lambda: list(task_names()), min_length=1)
    methods: list[Method] = Field(default_factory=lambda: list(METHODS), min_length=1)
    seeds: list[Seed] = Field(default_factory=lambda: list(DEFAULT_SEEDS), min_length=1)
    task_seeds: dict[TaskName, Annotated[list[Seed], Field(min_length=1), AfterValidator(_no_duplicates)]] = Field(
        default_factory=dict)
    arms: dict[str, dict[str, Any]] | None = Field(None, min_length=1)
    reference: str | None = None
    grid: dict[str, Any] | None = None
    sweep: SweepSpec | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare_sweep_means_defaults(cls, data: Any) -> Any:
        # `sweep:` with nothing after it reads as null; the author asked for a sweep, not for none.
        if isinstance(data, dict) and "sweep" in data and data["sweep"] is None:
            data = {**data, "sweep": {}}
        return data

    @field_validator("config", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("tasks", "methods", "seeds")
    @classmethod
    def _unique(cls, v: list) -> list:
        return _no_duplicates(v)


@dataclass(frozen=True)
class Plan:
    """A validated plan: the resolved base config and, per method, the grid axes {dotted key: [values]}."""

    name: str
    path: Path
    base: Config
    tasks: tuple[str, ...]
    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    grid: dict[str, dict[str, list]]
    sweep_seeds: tuple[int, ...] | None = None
    description: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)
    # {task: {dotted key: value}} from the plan's task_overrides, less the keys the command line sets (it wins)
    task_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    # {task: final seeds} from the plan's task_seeds: those tasks run these instead of `seeds`
    task_seeds: dict[str, tuple[int, ...]] = field(default_factory=dict)
    # what the plan compares (tunebench.arms): its `arms:`, or one arm per method named by it; `grid` is keyed
    # by arm name. `reference`: the arm every other is compared with (None: a plan without full fine-tuning)
    arms: tuple[Arm, ...] = ()
    reference: str | None = None

    def __post_init__(self) -> None:
        if not self.arms:
            object.__setattr__(self, "arms", default_arms(self.methods))

    @property
    def named_arms(self) -> bool:
        """Whether the plan names its arms (`arms:`) rather than running one per method."""
        return any(a.name != a.method or a.settings for a in self.arms)

    def arm(self, name: str) -> Arm:
        return next(a for a in self.arms if a.name == name)

    def seeds_of(self, task: str) -> tuple[int, ...]:
        """The final stage's seeds for one task: its `task_seeds` entry, else the plan's `seeds`."""
        return self.task_seeds.get(task, self.seeds)

    def seeds_text(self) -> str:
        """`[42, 43, 44, 45, 46]`, or with task_seeds `[42, 43, 44, 45, 46]; rte [42, 43, 44]`."""
        return "; ".join([str(list(self.seeds))] + [f"{t} {list(s)}" for t, s in self.task_seeds.items()])

    @property
    def two_stage(self) -> bool:
        return self.sweep_seeds is not None

    @property
    def stages(self) -> tuple[str, ...]:
        return ("sweep", "final") if self.two_stage else ("final",)

    @property
    def output_dir(self) -> Path:
        """<output_dir>/<name>: the final runs and selection.json."""
        return Path(self.base.output_dir) / self.name

    def experiment(self, stage: str) -> str:
        return self.name + SWEEP_SUFFIX if stage == "sweep" else self.name


# ---------------------------------------------------------------- loading


def load_plan(
    path: str | os.PathLike,
    config_files: list[str] | tuple[str, ...] = (),
    overrides: list[str] | tuple[str, ...] = (),
) -> Plan:
    """Read and validate a plan file; `config_files` and `overrides` come from the command line."""
    path = Path(path)
    tree = read_plan_yaml(path)
    spec = validate_spec(tree, path)
    base_tree = _plan_base_tree(spec, path)
    arms = _arms(spec, path, base_tree)
    grid = normalize_grid(spec.grid, arms, path)
    flat = bool(spec.grid) and not set(spec.grid) & ({a.name for a in arms} | set(METHODS))
    validate_grid(grid, base_tree, path, arms, flat=flat)
    base_tree, command_line = _apply_command_line(base_tree, config_files, overrides, grid, arms)
    base_tree["experiment"] = spec.name
    base = validate_config(base_tree, source=str(path))
    task_overrides = _task_overrides(spec, path, base_tree, grid, command_line, arms)
    return Plan(
        name=spec.name, path=path, base=base, tasks=tuple(spec.tasks), methods=_methods(arms),
        seeds=tuple(spec.seeds), grid=grid, description=spec.description,
        sweep_seeds=tuple(spec.sweep.seeds) if spec.sweep else None, overrides=flatten_dotted(spec.overrides),
        task_overrides=task_overrides, task_seeds=_task_seeds(spec, path), arms=arms,
        reference=_reference(spec, path, arms),
    )


def _methods(arms: tuple[Arm, ...]) -> tuple[str, ...]:
    """The methods the arms use, in the order they first appear."""
    return tuple(dict.fromkeys(a.method for a in arms))


# ---------------------------------------------------------------- arms


def _arms(spec: PlanSpec, path: Path, base_tree: dict) -> tuple[Arm, ...]:
    """The plan's arms: `arms:` checked (a name, a method, settings its method reads), else one per method."""
    if spec.arms is None:
        return default_arms(spec.methods)
    if "methods" in spec.model_fields_set:
        raise TunebenchError(f"{path}: methods and arms: give one (each arm names its method)")
    out = []
    for name, body in spec.arms.items():
        where = f"{path}: arms.{name}"
        if not isinstance(name, str) or not ARM_NAME.match(name):
            raise TunebenchError(f"{where}: an arm's name is lowercase letters, digits and _, starting with a "
                                 "letter (e.g. lora_r64)")
        if not isinstance(body, dict) or body.get("method") not in METHODS:
            raise TunebenchError(f"{where}: expected a mapping with `method:` ({' or '.join(METHODS)}) and the "
                                 "keys that define the arm, e.g. {method: lora, lora.r: 64}")
        method = body["method"]
        settings = flatten_dotted({k: v for k, v in body.items() if k != "method"})
        tree = deep_merge(base_tree, {"method": method})
        for key, value in settings.items():
            problem = arm_key_problem(key, method)
            if problem:
                raise TunebenchError(f"{where}: {problem}")
            set_dotted(tree, key, value)
        validate_config(tree, source=where)
        out.append(Arm(name, method, settings))
    return tuple(out)


def _reference(spec: PlanSpec, path: Path, arms: tuple[Arm, ...]) -> str | None:
    """The reference arm: `reference:`, else full fine-tuning's (tunebench.arms.reference_of); a plan without
    one may leave it out only while it has a single arm or runs no full fine-tuning and names no arms."""
    try:
        return reference_of(arms, spec.reference)
    except ValueError as e:
        if spec.reference is None and (len(arms) == 1 or spec.arms is None):
            return None
        raise TunebenchError(f"{path}: {e}") from None


def _set_by_arm(key: str, arms: tuple[Arm, ...]) -> str | None:
    """The arm whose settings hold `key`, a section of it or a key inside it (None: no arm sets it)."""
    for arm in arms:
        if any(key == k or k.startswith(key + ".") or key.startswith(k + ".") for k in arm.settings):
            return arm.name
    return None


def read_plan_yaml(path: Path) -> dict:
    return read_yaml(path, what="plan file", top_level="a mapping with at least `name:`")


def validate_spec(tree: dict, path: Path) -> PlanSpec:
    try:
        return PlanSpec.model_validate(tree)
    except ValidationError as e:
        raise TunebenchError(format_spec_error(e, path, tree)) from None


def format_spec_error(e: ValidationError, path: Path, tree: dict) -> str:
    err = e.errors()[0]
    loc = err["loc"]
    key = _loc_text(loc)
    if err["type"] == "extra_forbidden":
        known = ", ".join(PlanSpec.model_fields if len(loc) == 1 else SweepSpec.model_fields)
        return f"{path}: unknown key {key!r} (known: {known})"
    if err["type"] == "missing":
        return f"{path}: {key}: required"
    msg = error_message(err)
    found, value = _lookup(tree, loc)
    return f"{path}: {key} = {value!r}: {msg}" if found else f"{path}: {key}: {msg}"


def _loc_text(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _lookup(tree: Any, loc: tuple) -> tuple[bool, Any]:
    node = tree
    for part in loc:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return False, None
    return True, node


# ---------------------------------------------------------------- base config


def _plan_base_tree(spec: PlanSpec, path: Path) -> dict:
    """Defaults <- the plan's config files (relative to the plan file) <- the plan's overrides."""
    tree: dict = Config().model_dump()
    for name in spec.config:
        f = Path(name) if Path(name).is_absolute() else path.parent / name
        if not f.is_file():
            raise TunebenchError(f"{path}: config: {name}: file not found (paths are relative to the plan file)")
        tree = deep_merge(tree, read_yaml(f))
        validate_config(tree, source=f"{path}: config: {name}")
    overrides = flatten_dotted(spec.overrides)
    for key, value in overrides.items():
        _check_not_set_by_plan(key, f"{path}: overrides")
        set_dotted(tree, key, value)
        validate_config(tree, source=f"{path}: overrides")
    return tree


def _task_overrides(spec: PlanSpec, path: Path, base_tree: dict, grid: dict[str, dict[str, list]],
                    command_line: set[str], arms: tuple[Arm, ...] = ()) -> dict[str, dict[str, Any]]:
    """Each task's overrides, checked: a task the plan runs, keys it may set (not the plan's own, not a swept
    one), values that give a valid config with every grid point; keys the command line sets are dropped."""
    swept = {key: arm for arm, axes in grid.items() for key in axes}
    out: dict[str, dict[str, Any]] = {}
    for task, updates in spec.task_overrides.items():
        where = f"{path}: task_overrides.{task}"
        if task not in spec.tasks:
            raise TunebenchError(f"{where}: task {task!r} is not in tasks {list(spec.tasks)}")
        if not updates:
            raise TunebenchError(f"{where}: expected a non-empty mapping of config keys to values")
        flat = flatten_dotted(updates)
        for key in flat:
            _check_not_set_by_plan(key, where)
            _check_not_set_by_arm(key, arms, where)
            if key in swept:
                raise TunebenchError(f"{where}: {key} is swept by the plan's grid ({swept[key]})")
            if key == "output_dir":
                raise TunebenchError(f"{where}: output_dir is the plan's, one folder for every task; set it in "
                                     "`overrides` or on the command line")
        # the command line wins, also where it sets a whole section (model.tiny={...} over model.tiny.x)
        kept = {k: v for k, v in flat.items() if not any(k == c or k.startswith(c + ".") for c in command_line)}
        tree = deep_merge(base_tree, {"task": task})
        for key, value in kept.items():
            set_dotted(tree, key, value)
        validate_config(tree, source=where)
        validate_grid(grid, tree, path, arms, context=f" with task_overrides.{task}")  # e.g. a stride vs a swept length
        if kept:
            out[task] = kept
    return out


def _task_seeds(spec: PlanSpec, path: Path) -> dict[str, tuple[int, ...]]:
    """Each task_seeds entry, for a task the plan runs, in the plan's task order."""
    for task in spec.task_seeds:
        if task not in spec.tasks:
            raise TunebenchError(f"{path}: task_seeds.{task}: task {task!r} is not in tasks {list(spec.tasks)}")
    return {task: tuple(spec.task_seeds[task]) for task in spec.tasks if task in spec.task_seeds}


def _check_not_set_by_arm(key: str, arms: tuple[Arm, ...], where: str) -> None:
    arm = _set_by_arm(key, arms)
    if arm is not None:
        raise TunebenchError(f"{where}: {key} is set by arm {arm} (arms.{arm}): the arm is defined by it")


def _check_not_set_by_plan(key: str, where: str) -> None:
    if key in _SET_BY_PLAN:
        raise TunebenchError(f"{where}: {key} is set by the plan's `{_SET_BY_PLAN[key]}:`, not here")


def _apply_command_line(tree: dict, files: list[str] | tuple[str, ...], overrides: list[str] | tuple[str, ...],
                        grid: dict[str, dict[str, list]], arms: tuple[Arm, ...] = ()) -> tuple[dict, set[str]]:
    """The tree with the command line's config files and overrides applied, and the dotted keys they set."""
    swept = {key: arm for arm, axes in grid.items() for key in axes}
    keys: set[str] = set()
    for f in files:
        update = read_yaml(f)
        for key in flatten_dotted(update):
            _check_not_set_by_arm(key, arms, str(f))
        keys |= set(flatten_dotted(update))
        tree = deep_merge(tree, update)
        validate_config(tree, source=str(f))
    for text in overrides:
        key, value = parse_override(text)
        _check_not_set_by_plan(key, f"override {text}")
        _check_not_set_by_arm(key, arms, f"override {text}")
        if key in swept:
            raise TunebenchError(f"override {text}: {key} is swept by the plan's grid ({swept[key]})")
        keys.add(key)
        set_dotted(tree, key, value)
        validate_config(tree, source=f"override {text}")
    return tree, keys


# ---------------------------------------------------------------- grid


def normalize_grid(grid: dict[str, Any] | None, arms: tuple[Arm, ...] | list[str],
                   path: Path) -> dict[str, dict[str, list]]:
    """{arm name: axes}. A flat grid applies to every arm; a section named like an arm is that arm's, one
    named like a method (and no arm) every arm of that method without its own section. `arms` may be method
    names (one arm each)."""
    arms = tuple(a if isinstance(a, Arm) else Arm(a, a) for a in arms)
    if grid is None:
        return {a.name: {} for a in arms}
    if not grid:
        raise TunebenchError(f"{path}: grid: empty (leave `grid` out to run the base setting only)")
    names = {a.name for a in arms}
    sections = [k for k in grid if k in names or k in METHODS]
    if sections and len(sections) < len(grid):
        others = [k for k in grid if k not in names and k not in METHODS]
        for k in others:
            if isinstance(grid[k], dict):        # a section, not a key: a misspelt or missing arm
                raise TunebenchError(f"{path}: grid.{k}: no arm or method named {k!r} (arms: "
                                     f"{', '.join(a.name for a in arms)})")
        raise TunebenchError(f"{path}: grid: mixes sections ({', '.join(sections)}) with config keys "
                             f"({', '.join(others)}); put every key under an arm or a method")
    if not sections:
        return {a.name: _check_axes(grid, f"{path}: grid") for a in arms}
    methods = list(dict.fromkeys(a.method for a in arms))
    for k in sections:
        if k not in names and k not in methods:       # a method no arm uses
            raise TunebenchError(f"{path}: grid.{k}: method {k!r} is not in methods {methods}")
    out = {}
    for a in arms:
        section = a.name if a.name in grid else (a.method if a.method in grid and a.method not in names else None)
        out[a.name] = _check_axes(grid[section], f"{path}: grid.{section}") if section else {}
    return out


def _check_axes(axes: Any, where: str) -> dict[str, list]:
    if not isinstance(axes, dict) or not axes:
        raise TunebenchError(f"{where}: expected a non-empty mapping of config keys to lists of values")
    for key, values in axes.items():
        _check_not_set_by_plan(key, where)
        if is_ignored(key):   # outside every run's effective config (tunebench.results): one id, one computation
            raise TunebenchError(f"{where}: {key} does not change what a run computes; it cannot be swept")
        if not isinstance(values, list) or not values:
            raise TunebenchError(f"{where}: {key}: expected a non-empty list of values, got {values!r}")
        if any(values.count(v) > 1 for v in values):
            raise TunebenchError(f"{where}: {key}: duplicate values in {values!r}")
    return dict(axes)


def validate_grid(grid: dict[str, dict[str, list]], base_tree: dict, path: Path,
                  arms: tuple[Arm, ...] = (), flat: bool = False, context: str = "") -> None:
    """Every value of every axis must give a valid config, and no axis may be one its arm's method ignores
    or its arm sets. `arms` default: one per method, named by it. `context` ends the error's location (e.g.
    " with task_overrides.rte" when base_tree is one task's)."""
    by_name = {a.name: a for a in arms}
    for name, axes in grid.items():
        arm = by_name.get(name, Arm(name, name))
        where = (f"{path}: grid" if flat else f"{path}: grid.{name}") + context
        for key, values in axes.items():
            _check_method_reads(key, arm.method, where, flat)
            if _set_by_arm(key, (arm,)):
                raise TunebenchError(f"{where}: {key} is set by arm {arm.name} (arms.{arm.name}): the arm is "
                                     "defined by it; make one arm per value instead")
            for value in values:
                tree = deep_merge(base_tree, {"method": arm.method})
                for k, v in arm.settings.items():
                    set_dotted(tree, k, v)
                set_dotted(tree, key, value)
                validate_config(tree, source=where)


def _check_method_reads(key: str, method: str, where: str, flat: bool) -> None:
    if is_ignored(key, method):   # sweeping it would train identical models under different grid points
        hint = "; give each method its own grid section" if flat else ""
        raise TunebenchError(f"{where}: {key} has no effect on {method} runs{hint}")
