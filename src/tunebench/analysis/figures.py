"""Figures from analysed runs: (metrics.json, analysis.json) pairs (or their tables) in, matplotlib Figures out.

`analysis_figures(pairs)` returns {name: Figure}, one column of panels per task, built on matplotlib's
object API (no pyplot global state; render with `tunebench.report.plots.render_png` or `fig.savefig`):

  energy_rank_by_layer     mean 90%-energy rank of dW per layer (Biderman et al., 2024; rows: attention, MLP),
                           one line per LoRA rank (viridis, low to high) and full fine-tuning (red, dashed);
                           log y axis.
  effective_rank_by_layer  the same for Roy and Vetterli's (2007) effective rank; left out when no record has
                           it (analysis.json of schema 1).
  intruders_vs_rank        intruder dimensions per run (sum over matrices) against the LoRA rank (log2 x
                           axis, mean +- sd over seeds); full fine-tuning as a horizontal reference line with
                           its +- sd band.
  forgetting_vs_rank       delta_loss = loss_after - loss_before on the held-out text, same layout.
  accuracy_vs_rank         the test split's primary metric, same layout.
An empty input gives an empty dict. FIGURE_CAPTIONS holds a caption per figure name.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from tunebench.analysis.tables import analysis_tables

FULL_COLOR = "#d62728"
LORA_COLOR = "#1f77b4"
GROUPS = ("attention", "mlp")
RANK_BY_LAYER = {  # name: (modules column, y label, title)
    "energy_rank_by_layer": ("energy_rank", "energy rank of dW ({energy})",
                             "Energy rank ({energy}) of the weight update per layer"),
    "effective_rank_by_layer": ("effective_rank", "effective rank of dW (Roy-Vetterli)",
                                "Effective rank (Roy-Vetterli) of the weight update per layer"),
}
FIGURE_CAPTIONS = {
    "energy_rank_by_layer": "Energy rank of the weight update per layer: the number of singular values of dW "
                            "holding 90% of ||dW||_F^2 (Biderman et al., 2024); LoRA ranks and full fine-tuning.",
    "effective_rank_by_layer": "Effective rank of the weight update per layer: exp(entropy of s / sum s) over "
                               "dW's singular values s (Roy and Vetterli, 2007); LoRA ranks and full fine-tuning.",
    "intruders_vs_rank": "Intruder dimensions (top-10 singular vectors of W_after with max |cos| < 0.5 to every "
                         "singular vector of W_before) against LoRA rank; full fine-tuning as reference.",
    "forgetting_vs_rank": "Forgetting: LM loss on held-out text after minus before fine-tuning, against rank.",
    "accuracy_vs_rank": "Test primary metric against LoRA rank; full fine-tuning as reference.",
}
VS_RANK = {  # name: (by_rank column, y label, title)
    "intruders_vs_rank": ("intruders_total", "intruder dimensions (sum over matrices)",
                          "Intruder dimensions vs LoRA rank"),
    "forgetting_vs_rank": ("delta_loss", "delta LM loss on held-out text (nats)",
                           "Forgetting vs LoRA rank (loss after - before)"),
    "accuracy_vs_rank": ("test_primary", "test primary metric", "Test metric vs LoRA rank"),
}


def analysis_figures(pairs: Iterable[tuple[dict, dict]] | None = None,
                     tables: dict[str, pd.DataFrame] | None = None) -> dict[str, Figure]:
    """{name: Figure} (see the module docstring) from the pairs, or from `analysis_tables(pairs)`."""
    tables = tables if tables is not None else analysis_tables(pairs or [])
    if tables["runs"].empty:
        return {}
    modules = tables["modules"]
    figures = {}
    for name, (column, ylabel, title) in RANK_BY_LAYER.items():
        if modules[column].notna().any():
            energy = _energy_label(modules)
            figures[name] = plot_rank_by_layer(modules, column, ylabel.format(energy=energy),
                                               title.format(energy=energy))
    for name, (column, ylabel, title) in VS_RANK.items():
        figures[name] = plot_vs_rank(tables["by_rank"], column, ylabel, title)
    return figures


# ---------------------------------------------------------------- ranks per layer


def _energy_label(modules: pd.DataFrame) -> str:
    """"90%" for the energy every record used (settings.energy), else the distinct ones."""
    energies = sorted({float(e) for e in modules["energy"].dropna()}) if "energy" in modules else []
    return "/".join(f"{100 * e:g}%" for e in energies) or "90%"


def plot_rank_by_layer(modules: pd.DataFrame, column: str = "energy_rank",
                       ylabel: str = "energy rank of dW (90%)",
                       title: str = "Energy rank (90%) of the weight update per layer") -> Figure:
    """Rows: attention / MLP; columns: tasks; one line per setting (LoRA rank or full): the mean of `column`
    (a modules-table rank) over module types and seeds."""
    tasks = sorted(modules["task"].dropna().unique())
    fig = Figure(figsize=(4.5 * max(len(tasks), 1), 6.5))
    axes = fig.subplots(len(GROUPS), max(len(tasks), 1), squeeze=False)
    keys = ["task", "method", *(["family"] if "family" in modules else []), "lora_r", "group", "layer"]
    per_layer = modules.groupby(keys, dropna=False)[column].mean().reset_index()
    for j, task in enumerate(tasks):
        for i, group in enumerate(GROUPS):
            ax = axes[i][j]
            _draw_layer_lines(ax, per_layer[(per_layer["task"] == task) & (per_layer["group"] == group)], column)
            ax.set_title(f"{task}: {group}")
            ax.set_xlabel("layer")
            ax.set_ylabel(ylabel)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:  # one legend for all panels, right of them
        fig.legend(handles, labels, loc="center right", fontsize=8)
    fig.suptitle(f"{title} (mean over module types and seeds)")
    fig.tight_layout(rect=(0, 0, 0.86, 1))
    return fig


def _draw_layer_lines(ax, data: pd.DataFrame, column: str) -> None:
    lora = data[data["method"] == "lora"]
    families = lora["family"] if "family" in lora else pd.Series("LoRA", index=lora.index)
    series = sorted({(str(f), int(r)) for f, r in zip(families, lora["lora_r"], strict=True) if pd.notna(r)},
                    key=lambda fr: (fr[0] != "LoRA", fr))
    cmap = colormaps["viridis"]
    for k, (family, r) in enumerate(series):
        line = lora[(families == family) & (lora["lora_r"] == r)].sort_values("layer")
        color = cmap(k / max(len(series) - 1, 1))
        ax.plot(line["layer"], line[column], marker="o", ms=3, color=color, ls="-" if family == "LoRA" else ":",
                label=f"{family} r={r}")
    full = data[data["method"] == "full"].sort_values("layer")
    if not full.empty:
        ax.plot(full["layer"], full[column], ls="--", lw=2, color=FULL_COLOR, label="full FT")
    values = data[column].to_numpy(float)
    values = values[~np.isnan(values)]
    if values.size and values.min() > 0:
        ax.set_yscale("log")


# ---------------------------------------------------------------- measures vs LoRA rank


def plot_vs_rank(by_rank: pd.DataFrame, column: str, ylabel: str, title: str) -> Figure:
    """One panel per task: each LoRA family's (LoRA, DoRA, rsLoRA: tunebench.arms) mean with its 95% interval
    over seeds against rank (the sd where a setting has too few seeds for an interval), full fine-tuning as a
    reference line."""
    tasks = sorted(by_rank["task"].dropna().unique())
    fig = Figure(figsize=(4.5 * max(len(tasks), 1), 3.8))
    axes = fig.subplots(1, max(len(tasks), 1), squeeze=False)[0]
    for ax, task in zip(axes, tasks, strict=False):
        data = by_rank[by_rank["task"] == task]
        bounds = value_bounds(column, task)
        _draw_lora_points(ax, data[data["method"] == "lora"], column, bounds)
        _draw_full_reference(ax, data[data["method"] == "full"], column, bounds)
        ax.set_title(task)
        ax.set_xlabel("LoRA rank r")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle(f"{title} (mean, 95% CI over seeds; +- sd where one seed)")
    fig.tight_layout()
    return fig


def value_bounds(column: str, task: str) -> tuple[float, float]:
    """The range a measure can take, which a mean +- sd bar must not leave: a test metric in [0, 1] (SQuAD's
    F1 in [0, 100], the official scale), an intruder count >= 0; a loss difference is unbounded."""
    from tunebench.data.tasks import TASKS

    if column == "test_primary":
        return 0.0, 100.0 if task in TASKS and TASKS[task].is_qa else 1.0
    if column.startswith("intruders"):
        return 0.0, math.inf
    return -math.inf, math.inf


def clipped_error(mean: np.ndarray, sd: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    """Asymmetric error bars: mean - sd and mean + sd cut at the measure's bounds (shape (2, n))."""
    lo, hi = bounds
    return np.vstack([np.minimum(sd, np.maximum(mean - lo, 0.0)), np.minimum(sd, np.maximum(hi - mean, 0.0))])


FAMILY_COLORS = {"LoRA": LORA_COLOR, "DoRA": "#2a9d8f", "rsLoRA": "#e9c46a", "rsDoRA": "#9d4edd"}


def _draw_lora_points(ax, lora: pd.DataFrame, column: str,
                      bounds: tuple[float, float] = (-math.inf, math.inf)) -> None:
    lora = lora.dropna(subset=["lora_r"]).sort_values("lora_r")
    if lora.empty:
        return
    families = lora["family"] if "family" in lora else pd.Series("LoRA", index=lora.index)
    ticks: set[float] = set()
    for family in sorted(families.unique(), key=lambda f: (f != "LoRA", f)):
        g = lora[families == family]
        r = g["lora_r"].to_numpy(float)
        mean = g[f"{column}_mean"].to_numpy(float)
        half = _half_interval(g, column)
        ax.errorbar(r, mean, yerr=clipped_error(mean, half, bounds), fmt="o-", capsize=3,
                    color=FAMILY_COLORS.get(str(family), "#555"), label=str(family))
        ticks |= set(r.tolist())
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(ticks), [str(int(v)) for v in sorted(ticks)])


def _half_interval(g: pd.DataFrame, column: str) -> np.ndarray:
    """The 95% interval's half width per setting; the sd where there is none (one seed: 0)."""
    sd = np.nan_to_num(g[f"{column}_sd"].to_numpy(float))
    if f"{column}_ci_high" not in g:
        return sd
    half = g[f"{column}_ci_high"].to_numpy(float) - g[f"{column}_mean"].to_numpy(float)
    return np.where(np.isnan(half), sd, half)


def _draw_full_reference(ax, full: pd.DataFrame, column: str,
                         bounds: tuple[float, float] = (-math.inf, math.inf)) -> None:
    if full.empty:
        return
    mean = float(full[f"{column}_mean"].iloc[0])
    sd = float(np.nan_to_num(full[f"{column}_sd"].iloc[0]))
    if np.isnan(mean):
        return
    ax.axhline(mean, ls="--", lw=2, color=FULL_COLOR, label="full FT")
    if sd > 0:
        ax.axhspan(max(mean - sd, bounds[0]), min(mean + sd, bounds[1]), color=FULL_COLOR, alpha=0.12)
