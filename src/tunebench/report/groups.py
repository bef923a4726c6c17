"""Which runs can be compared with which (pure): LoRA against full fine-tuning only under the same conditions.

A comparison of the two arms is valid only when their runs differ in the method, the method's own settings
and the seed, and in nothing else. A run's *comparison context* is what is left of its effective config
(tunebench.results.effective_config: NOT_COMPUTED keys already gone) once these are taken out:

  - the method and its own keys: `method`, the `lora` section, `training.learning_rate` and
    `training.full_finetune_learning_rate` (each method's learning rate), and `training.seed`, `task`;
  - the keys that change what is saved, logged or how fast, not the numbers: NOT_NUMBERS.

`training.precision` is the precision the run resolved on its device (metrics.json precision.name) where
recorded: "auto" is bf16-mixed on a GPU and 32-true on a CPU.

Task-specific settings are normal (a plan's task_overrides: max_steps for SQuAD v2 only), so contexts are
compared within each task: the keys whose values vary among a task's ok runs are that task's differing keys,
their union over tasks the set D. Runs are grouped by their values of D, across tasks; D empty is one group,
the usual case. Each group is a comparison of its own, named by its values of D ("model.name=a,
training.precision=bf16-mixed"); runs of different groups are never compared. Runs that do not record their
config (metrics.json from before it held one) cannot be checked: they stay in the one group, with a note, and
are left out of every group when there are several (which one they belong to is unknown). Runs that are not
ok join the group their values of D name; one whose values name no group of ok runs forms its own.

Readers: `group_inputs(inputs)` -> Grouping (its groups, D, the runs left out), `restrict_inputs(inputs, group)`,
`split_inputs(inputs)` -> [(group, its inputs)]; `describe_context(configs)` says what a group holds fixed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from tunebench.config import flatten_dotted, get_dotted, pop_dotted
from tunebench.data.tasks import TASKS
from tunebench.errors import TunebenchError
from tunebench.results import STATUS_OK, digest, effective_config

if TYPE_CHECKING:
    from tunebench.report.build import Inputs

# The method and its own keys, the seed and the task: what may differ between the two arms of a comparison.
METHOD_KEYS = ("method", "lora", "training.learning_rate", "training.full_finetune_learning_rate")
NOT_CONTEXT = ("task", "training.seed", *METHOD_KEYS)
# Keys that change what is saved or logged, or how fast, not the numbers a run computes.
NOT_NUMBERS = ("training.save_full_model", "training.save_total_limit", "training.logging_steps",
               "training.cpu_threads", "training.per_device_eval_batch_size")
NOT_RECORDED = "(not recorded)"   # a key absent from a run's saved config (written by an earlier version)
PRECISION_KEY = "training.precision"
MAX_SLUG = 80


class MixedResultsError(TunebenchError):
    """The runs handed to one comparison hold several comparison contexts (split them: split_inputs)."""


@dataclass(frozen=True)
class Group:
    """One comparison: the runs sharing their values of the differing keys."""

    name: str                          # "k=v, k2=v2" over the differing keys; "" when the folder is one group
    differing: dict[str, Any]          # this group's value of each differing key
    run_dirs: tuple[str, ...]          # its run folders (relative to the results folder), ok or not
    slug: str = ""                     # a folder name for its report ("" when the folder is one group)


@dataclass
class Grouping:
    groups: list[Group]
    differing_keys: dict[str, list[str]] = field(default_factory=dict)   # key -> the tasks whose ok runs vary in it
    unchecked: list[str] = field(default_factory=list)    # ok runs without a saved config
    not_placed: list[str] = field(default_factory=list)   # runs in no group (only when there are several)

    @property
    def mixed(self) -> bool:
        return len(self.groups) > 1


# ---------------------------------------------------------------- contexts


def comparison_context(config: Mapping[str, Any], precision: str | None = None) -> dict[str, Any]:
    """The run's comparison context as {dotted key: value} (module docstring); `precision` is the precision the
    run resolved (metrics.json precision.name), replacing training.precision when given."""
    tree = effective_config(config)
    for key in (*NOT_CONTEXT, *NOT_NUMBERS):
        pop_dotted(tree, key)
    flat = {k: _canonical(v) for k, v in flatten_dotted(tree).items()}
    if precision:
        flat[PRECISION_KEY] = precision
    return flat


def _canonical(value: Any) -> Any:
    """A hashable value equal for equal settings: lists as tuples, 3.0 as 3 (a float field saved as an int)."""
    if isinstance(value, list | tuple):
        return tuple(_canonical(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), _canonical(v)) for k, v in value.items()))
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


def format_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, tuple):
        return json.dumps(list(value), default=str)
    return str(value)


# ---------------------------------------------------------------- grouping


def group_runs(runs: pd.DataFrame, configs: Mapping[str, Mapping], precisions: Mapping[str, str] | None = None
               ) -> Grouping:
    """Group the run table's runs (module docstring). `configs` / `precisions`: run_dir -> resolved config /
    resolved precision, as Inputs holds them."""
    precisions = precisions or {}
    contexts = {rd: comparison_context(configs[rd], precisions.get(rd)) for rd in runs["run_dir"] if rd in configs}
    ok = runs[runs["status"] == STATUS_OK]
    unchecked = [rd for rd in ok["run_dir"] if rd not in contexts]
    differing = differing_keys(ok, contexts)
    if not differing:
        return Grouping([Group("", {}, tuple(runs["run_dir"]))], {}, unchecked)
    keys = list(differing)

    def values(rd: str) -> tuple:
        return tuple(contexts[rd].get(k, NOT_RECORDED) for k in keys)

    members: dict[tuple, list[str]] = {}
    for rd in ok["run_dir"]:
        if rd in contexts:
            members.setdefault(values(rd), []).append(rd)
    not_placed = list(unchecked)
    for rd, status in zip(runs["run_dir"], runs["status"], strict=True):
        if status == STATUS_OK:
            continue
        if rd in contexts:
            members.setdefault(values(rd), []).append(rd)
        else:
            not_placed.append(rd)
    order = {rd: i for i, rd in enumerate(runs["run_dir"])}
    groups = [Group(group_name(dict(zip(keys, vals, strict=True))), dict(zip(keys, vals, strict=True)),
                    tuple(sorted(rds, key=order.__getitem__)))
              for vals, rds in sorted(members.items(), key=lambda kv: tuple(map(_value_order, kv[0])))]
    return Grouping(_with_slugs(groups), differing, unchecked, sorted(not_placed, key=order.__getitem__))


def _value_order(value: Any) -> tuple[int, float, str]:
    """Numbers in numeric order (50 before 100), before anything else in text order."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, format_value(value))


def differing_keys(ok: pd.DataFrame, contexts: Mapping[str, Mapping[str, Any]]) -> dict[str, list[str]]:
    """{key: tasks} for each context key whose value varies among one task's ok runs (a key absent from some
    runs' configs varies too); sorted by key, tasks in the study's order."""
    out: dict[str, list[str]] = {}
    tasks = sorted(set(ok["task"].dropna()), key=_task_order)
    for task in tasks:
        ctxs = [contexts[rd] for rd in ok.loc[ok["task"] == task, "run_dir"] if rd in contexts]
        for key in sorted({k for c in ctxs for k in c}):
            if len({c.get(key, NOT_RECORDED) for c in ctxs}) > 1:
                out.setdefault(key, []).append(task)
    return dict(sorted(out.items()))


def _task_order(task: str) -> tuple[int, str]:
    return (list(TASKS).index(task) if task in TASKS else len(TASKS), task)


def group_name(differing: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={format_value(v)}" for k, v in differing.items())


def slug(name: str) -> str:
    """A folder name for a group: its name with anything but letters, digits, '.', '_' and '-' as '-', the
    pairs joined by '__' ("model.name=a, training.precision=bf16-mixed" -> "model.name-a__training.precision-
    bf16-mixed"); names over MAX_SLUG characters end in a digest of the whole name."""
    parts = [re.sub(r"[^A-Za-z0-9._-]+", "-", part.strip()).strip("-.") for part in name.split(", ")]
    text = "__".join(p for p in parts if p) or "group"
    if len(text) > MAX_SLUG:
        text = text[:MAX_SLUG - 9].rstrip("-._") + "-" + digest({"name": name})
    return text


def _with_slugs(groups: list[Group]) -> list[Group]:
    seen: dict[str, int] = {}
    out = []
    for g in groups:
        s = slug(g.name)
        seen[s] = seen.get(s, 0) + 1
        out.append(dataclasses.replace(g, slug=s if seen[s] == 1 else f"{s}-{seen[s]}"))
    return out


def differing_text(grouping: Grouping) -> str:
    """'training.precision (within sst2, rte); model.name (within sst2)'."""
    return "; ".join(f"{k} (within {', '.join(tasks)})" for k, tasks in grouping.differing_keys.items())


def mixed_message(grouping: Grouping) -> str:
    """One line naming what differs: 'the runs differ in more than the method, its own settings and the seed:
    training.precision (within sst2, rte); 2 comparisons, each reported on its own'."""
    return (f"the runs differ in more than the method, its own settings and the seed: {differing_text(grouping)}; "
            f"{len(grouping.groups)} comparisons, each reported on its own")


# ---------------------------------------------------------------- inputs


def group_inputs(inputs: Inputs) -> Grouping:
    return group_runs(inputs.runs, inputs.configs, inputs.precisions)


def restrict_inputs(inputs: Inputs, group: Group) -> Inputs:
    """The inputs of one group's runs: runs, curves, predictions, configs and analysed runs of its run folders;
    selection.json files from the folders that hold its runs (a plan writes one beside its final runs)."""
    keep = set(group.run_dirs)
    runs = inputs.runs[inputs.runs["run_dir"].isin(keep)].reset_index(drop=True)
    ids = set(zip(runs["experiment"], runs["run_id"], strict=True))
    files = inputs.selection_files
    if files:
        from tunebench.report.collect import merge_selections

        selections = merge_selections({src: data for src, data in files.items() if _holds_any(src, keep)})
    else:   # Inputs built without the files: keep the merged entries whose file sits above one of its runs
        selections = {}
        for task, methods in inputs.selections.items():
            for method, entry in methods.items():
                if _holds_any(str(entry.get("source", "")), keep):
                    selections.setdefault(task, {})[method] = entry
    return dataclasses.replace(
        inputs, runs=runs,
        curves=inputs.curves[inputs.curves["run_dir"].isin(keep)].reset_index(drop=True),
        predictions={k: v for k, v in inputs.predictions.items() if k in keep},
        selections=selections, selection_files={k: v for k, v in files.items() if _holds_any(k, keep)},
        configs={k: v for k, v in inputs.configs.items() if k in keep},
        precisions={k: v for k, v in inputs.precisions.items() if k in keep},
        analysis_pairs=[(m, a) for m, a in inputs.analysis_pairs if (m.get("experiment"), m.get("run_id")) in ids],
    )


def _holds_any(source: str, run_dirs: set[str]) -> bool:
    """Whether the folder of a selection.json (relative path) holds one of the run folders."""
    folder = source.rsplit("/", 1)[0] + "/" if "/" in source else ""
    return any(rd.startswith(folder) for rd in run_dirs)


def split_inputs(inputs: Inputs) -> list[tuple[Group, Inputs]]:
    """One (group, inputs) per comparison: the inputs themselves when the folder is one group, otherwise each
    group's (restrict_inputs). Analyse each on its own (build.analyze); never compare across them."""
    grouping = group_inputs(inputs)
    if not grouping.mixed:
        return [(grouping.groups[0], inputs)]
    return [(g, restrict_inputs(inputs, g)) for g in grouping.groups]


@dataclass(frozen=True)
class HeldFixed:
    line: str                                  # describe_context of the ok runs ("" when none records a config)
    notes: list[str] = field(default_factory=list)


def held_fixed(inputs: Inputs) -> HeldFixed:
    """What one comparison holds fixed, for the report's header; MixedResultsError when the inputs hold several
    groups (a comparison across them would compare unlike with unlike: split_inputs first)."""
    grouping = group_inputs(inputs)
    if grouping.mixed:
        raise MixedResultsError(f"{inputs.results_dir}: {mixed_message(grouping)}; `tunebench report` writes one "
                                "report per comparison (tunebench.report.groups.split_inputs)")
    ok = set(inputs.runs.loc[inputs.runs["status"] == STATUS_OK, "run_dir"])
    notes = []
    if grouping.unchecked:
        n = len(grouping.unchecked)
        notes.append(f"{n} ok run{'s' if n > 1 else ''} record{'' if n > 1 else 's'} no config (metrics.json from "
                     "an earlier version): whether they share the other runs' model, precision and settings "
                     f"cannot be checked; kept in the comparison: {', '.join(grouping.unchecked[:5])}"
                     + (", ..." if n > 5 else ""))
    configs = {rd: c for rd, c in inputs.configs.items() if rd in ok}
    return HeldFixed(describe_context(configs, inputs.precisions), notes)


# ---------------------------------------------------------------- what a group holds fixed


def describe_context(configs: Mapping[str, Mapping], precisions: Mapping[str, str] | None = None) -> str:
    """What the runs' comparison holds fixed, in one line: model, precision, max_length, batch, training length
    and train-set cap; a value that differs between tasks (a task-specific setting) is given per task, e.g.
    "model tiny, precision 32-true, max_length 128, batch 16, 1 epoch (squad_v2: 100 steps)". "" when no
    config is given. `configs` / `precisions`: run_dir -> resolved config / resolved precision."""
    precisions = precisions or {}
    per_task: dict[str, dict[str, set[str]]] = {}
    for rd, cfg in configs.items():
        task = str(cfg.get("task", "?"))
        slot = per_task.setdefault(task, {})
        for item, text in _context_items(cfg, precisions.get(rd)).items():
            slot.setdefault(item, set()).add(text)
    if not per_task:
        return ""
    per_task = dict(sorted(per_task.items(), key=lambda kv: _task_order(kv[0])))
    items = []
    for item in ("model", "precision", "max_length", "batch", "length", "train examples"):
        by_task = {t: " / ".join(sorted(v[item])) for t, v in per_task.items() if item in v}
        if len(by_task) == len(per_task):
            items.append(_per_task_text(by_task))
        elif len(set(by_task.values())) == 1:   # a setting only some tasks have (a task-specific train cap)
            items.append(f"{next(iter(by_task.values()))} ({', '.join(by_task)} only)")
        elif by_task:
            items.append("; ".join(f"{t}: {text}" for t, text in by_task.items()) + " only")
    return ", ".join(items)


def _context_items(cfg: Mapping, precision: str | None) -> dict[str, str]:
    out = {}
    model = _get(cfg, "model.name")
    if model is not None:
        gguf = _get(cfg, "model.gguf_file")
        out["model"] = f"model {model}" + (f" ({gguf})" if gguf else "")
    prec = precision or _get(cfg, PRECISION_KEY)
    if prec is not None:
        out["precision"] = f"precision {prec}"
    length = _get(cfg, "model.max_length")
    if length is not None:
        out["max_length"] = f"max_length {length}"
    batch = _get(cfg, "training.per_device_train_batch_size")
    accumulation = _get(cfg, "training.gradient_accumulation_steps")
    if batch is not None:
        out["batch"] = f"batch {batch}" + (f" x {accumulation} accumulated" if accumulation not in (None, 1) else "")
    steps, epochs = _get(cfg, "training.max_steps"), _get(cfg, "training.num_train_epochs")
    if isinstance(steps, int | float) and steps > 0:
        out["length"] = f"{int(steps)} steps"
    elif epochs is not None:
        e = _canonical(epochs)
        out["length"] = f"{e:g} epoch{'' if e == 1 else 's'}" if isinstance(e, int | float) else f"{e} epochs"
    cap = _get(cfg, "data.max_train_examples")
    if cap is not None:
        out["train examples"] = f"at most {cap} train examples"
    return out


def _per_task_text(by_task: dict[str, str]) -> str:
    """'1 epoch (squad_v2: 100 steps)': the value most tasks share, then each other task's."""
    counts: dict[str, int] = {}
    for text in by_task.values():
        counts[text] = counts.get(text, 0) + 1
    common = max(counts, key=lambda t: (counts[t], t))
    others = [f"{task}: {text}" for task, text in by_task.items() if text != common]
    if not others:
        return common
    if len(by_task) == len(others) + 1 and counts[common] == 1 and len(by_task) > 1:
        return "; ".join(f"{task}: {text}" for task, text in by_task.items())   # no shared value
    return f"{common} ({'; '.join(others)})"


def _get(cfg: Mapping, key: str) -> Any:
    try:
        return get_dotted(dict(cfg), key)
    except (KeyError, TypeError):
        return None
