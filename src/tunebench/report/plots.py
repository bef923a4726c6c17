"""Report figures: DataFrames in, PNG bytes out (matplotlib's Agg canvas, no pyplot global state)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tunebench.data.tasks import TASKS

COLORS = {"lora": "#1f77b4", "full": "#d62728"}
LABELS = {"lora": "LoRA", "full": "full FT"}
METHODS = ("lora", "full")


def ordered_tasks(tasks: pd.Series) -> list[str]:
    """Tasks present, in the task table's order (sst2, mrpc, rte, squad_v2)."""
    present = set(tasks.dropna())
    return [t for t in TASKS if t in present]


def render_png(fig: Figure, dpi: int = 100) -> bytes:
    """The figure as PNG bytes."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)  # figures are laid out already; bbox "tight" would draw twice
    return buf.getvalue()


def plot_metric_by_task(comparison: pd.DataFrame) -> Figure:
    """Test primary metric (points) per task and method: mean with 95% CI over seeds."""
    fig = Figure(figsize=(1.8 + 1.6 * max(len(comparison), 1), 4))
    ax = fig.add_subplot()
    x = np.arange(len(comparison))
    for i, method in enumerate(METHODS):
        mean = comparison.get(f"{method}_mean", pd.Series(np.nan, index=comparison.index)).to_numpy(float)
        err = _ci_err(comparison, method)
        ax.errorbar(x + (i - 0.5) * 0.25, mean, yerr=err, fmt="o", capsize=4, color=COLORS[method],
                    label=LABELS[method])
    ax.set_xticks(x, [f"{t}\n({m})" for t, m in zip(comparison["task"], comparison["metric"], strict=True)])
    ax.set_xlim(-0.6, max(len(comparison), 1) - 0.4)
    ax.set_ylabel("test primary metric (points)")
    ax.set_title("Test metric per task (mean, 95% CI over seeds)")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def _ci_err(comparison: pd.DataFrame, method: str) -> np.ndarray:
    if f"{method}_mean" not in comparison:
        return np.zeros((2, len(comparison)))
    mean = comparison[f"{method}_mean"].to_numpy(float)
    lo = np.nan_to_num(mean - comparison[f"{method}_ci_low"].to_numpy(float))
    hi = np.nan_to_num(comparison[f"{method}_ci_high"].to_numpy(float) - mean)
    return np.vstack([lo, hi])


def plot_loss_curves(curves: pd.DataFrame, headline: pd.DataFrame) -> Figure:
    """Training and validation loss per task (rows), both methods, mean over seeds with a +-1 sd band.

    Runs are aligned on the optimizer step (not wall time), so seeds of one method average point by point.
    """
    tasks = ordered_tasks(headline["task"])
    fig = Figure(figsize=(10, 2.8 * max(len(tasks), 1)))
    axes = fig.subplots(max(len(tasks), 1), 2, squeeze=False)
    data = curves.merge(headline[["run_dir", "task", "method"]], on="run_dir")
    for row, task in enumerate(tasks):
        for col, (column, title) in enumerate((("loss", "training loss"), ("eval_loss", "validation loss"))):
            ax = axes[row][col]
            for method in METHODS:
                _plot_band(ax, data[(data["task"] == task) & (data["method"] == method)], column, method)
            ax.set_title(f"{task}: {title}")
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend()
    fig.tight_layout()
    return fig


def _plot_band(ax, runs: pd.DataFrame, column: str, method: str) -> None:
    rows = runs.dropna(subset=[column])
    if rows.empty:
        return
    wide = rows.pivot_table(index="step", columns="run_dir", values=column, aggfunc="mean").sort_index()
    mean, sd = wide.mean(axis=1), wide.std(axis=1, ddof=1).fillna(0.0)
    n = wide.shape[1]
    ax.plot(wide.index, mean, color=COLORS[method], label=f"{LABELS[method]} (n={n})")
    if n > 1:
        ax.fill_between(wide.index, mean - sd, mean + sd, color=COLORS[method], alpha=0.2, linewidth=0)


def plot_metric_vs_cost(efficiency: pd.DataFrame, cost: str, xlabel: str, log_x: bool) -> Figure:
    """Test primary metric (mean, 95% CI) against a cost column (trainable params, peak memory), per task."""
    tasks = ordered_tasks(efficiency["task"])
    fig = Figure(figsize=(3.2 * max(len(tasks), 1), 3.4))
    axes = fig.subplots(1, max(len(tasks), 1), squeeze=False)[0]
    for ax, task in zip(axes, tasks, strict=False):
        for _, r in efficiency[efficiency["task"] == task].iterrows():
            y = r["test_primary_mean"]
            err = [[_nz(y - r["test_primary_ci_low"])], [_nz(r["test_primary_ci_high"] - y)]]
            ax.errorbar([r[cost]], [y], yerr=err, fmt="o", capsize=4, color=COLORS[r["method"]],
                        label=LABELS[r["method"]])
        if log_x and (efficiency.loc[efficiency["task"] == task, cost] > 0).all():
            ax.set_xscale("log")
        ax.set_title(task)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test primary metric (points)")
    if tasks:
        axes[0].legend()
    fig.tight_layout()
    return fig


def plot_lr_sweep(settings: pd.DataFrame) -> Figure | None:
    """Validation primary metric (mean +- sd over seeds) against learning rate (log x), per task and
    method; None when no task x method ran more than one learning rate."""
    swept = [t for t, g in settings.groupby("task") if g.groupby("method")["learning_rate"].nunique().max() > 1]
    if not swept:
        return None
    fig = Figure(figsize=(3.6 * len(swept), 3.4))
    axes = fig.subplots(1, len(swept), squeeze=False)[0]
    for ax, task in zip(axes, ordered_tasks(pd.Series(swept)), strict=True):
        for (method, r), g in settings[settings["task"] == task].groupby(["method", "lora_r"], dropna=False):
            g = g.sort_values("learning_rate")
            label = LABELS[method] + (f" r={int(r)}" if method == "lora" and pd.notna(r) else "")
            ax.errorbar(g["learning_rate"], g["validation_mean"], yerr=g["validation_sd"].fillna(0.0),
                        fmt="o-", capsize=3, color=COLORS[method], label=label)
            sel = g[g["selected"]]
            ax.plot(sel["learning_rate"], sel["validation_mean"], "*", ms=14, color=COLORS[method], mec="k")
        ax.set_xscale("log")
        ax.set_title(f"{task} (star: headline setting)")
        ax.set_xlabel("learning rate")
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0].set_ylabel("validation primary metric (points)")
    fig.tight_layout()
    return fig


def _nz(x: float) -> float:
    return 0.0 if pd.isna(x) else float(x)


def build_figures(comparison: pd.DataFrame, curves: pd.DataFrame, headline: pd.DataFrame,
                  efficiency: pd.DataFrame, settings: pd.DataFrame) -> dict[str, bytes]:
    """Every report figure as {file name: PNG bytes}; plots with nothing to show are left out."""
    figs: dict[str, Figure | None] = {}
    if len(comparison):
        comparison = comparison[comparison["lora_n"] + comparison["full_n"] > 0]  # tasks with ok runs
    if len(comparison):
        figs["metric_by_task.png"] = plot_metric_by_task(comparison)
    if len(curves) and len(headline):
        figs["loss_curves.png"] = plot_loss_curves(curves, headline)
    if len(efficiency):
        figs["metric_vs_params.png"] = plot_metric_vs_cost(efficiency, "params_trainable", "trainable parameters",
                                                           log_x=True)
        figs["metric_vs_memory.png"] = plot_metric_vs_cost(efficiency, "peak_memory_mib", "peak memory (MiB)",
                                                           log_x=True)
    if len(settings):
        figs["lr_sweep.png"] = plot_lr_sweep(settings)
    return {name: render_png(f) for name, f in figs.items() if f is not None}
