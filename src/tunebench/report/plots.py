"""Report figures: DataFrames in, PNG bytes out (matplotlib's Agg canvas, no pyplot global state).

Every primary metric is in points (0-100: classification x 100, SQuAD v2 as the official script reports it),
so a score lies in SCORE_RANGE and LoRA - full in DIFF_RANGE. A t-interval on a few seeds can reach past
those bounds: drawn intervals are clipped to them and a clipped end is marked with an arrow head. Seeds are
drawn as dots beside their interval (with 3 seeds a t-interval alone says little).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import Formatter, LogLocator, MaxNLocator, NullFormatter

from tunebench.data.tasks import TASKS
from tunebench.report.tables import finite_or_nan

COLORS = {"lora": "#1f77b4", "full": "#d62728"}
LABELS = {"lora": "LoRA", "full": "full FT"}
METHODS = ("lora", "full")
SCORE_RANGE = (0.0, 100.0)    # a primary metric, points
DIFF_RANGE = (-100.0, 100.0)  # LoRA - full, points
WORD_COLORS = {"matches": "#2ca02c", "better": "#1f77b4", "worse": "#d62728", "inconclusive": "#7f7f7f",
               "not learned": "#b5179e", "only LoRA learned": "#7b2cbf", "only full learned": "#7b2cbf",
               "no comparison": "#999999"}
BAND_COLOR = "#2ca02c"
SEED_DOT = {"marker": "o", "ms": 5, "mfc": "white", "mec": "#222222", "mew": 1.0, "ls": "none"}


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


# ---------------------------------------------------------------- units and intervals


def clip_interval(lo: float, hi: float, bounds: tuple[float, float]) -> tuple[float, float, bool, bool]:
    """(lo, hi) clipped to bounds, and whether each end was clipped. NaN stays NaN."""
    low_cut = bool(not math.isnan(lo) and lo < bounds[0])
    high_cut = bool(not math.isnan(hi) and hi > bounds[1])
    return (bounds[0] if low_cut else lo), (bounds[1] if high_cut else hi), low_cut, high_cut


def human_count(n: float | None, digits: int = 3) -> str:
    """1234567 -> '1.23 M', 45000 -> '45 k', 950 -> '950' (`digits` significant digits)."""
    if n is None or pd.isna(n):
        return ""
    for div, unit in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if abs(n) >= div:
            return f"{n / div:.{digits}g}{unit}"
    return f"{n:.{digits}g}"


def human_mib(mib: float | None, digits: int = 3) -> str:
    """Memory given in MiB: MiB below 1 GiB, else GiB ('362 MiB', '1.4 GiB')."""
    if mib is None or pd.isna(mib):
        return ""
    if abs(mib) < 1024:
        return f"{mib:.0f} MiB" if digits <= 3 else f"{mib:.{digits - 3}f} MiB"
    return f"{mib / 1024:.{digits}g} GiB"


def human_seconds(s: float | None, digits: int = 3) -> str:
    """'45 s' below two minutes, '3.2 min' below two hours, else '2.5 h'."""
    if s is None or pd.isna(s):
        return ""
    if abs(s) < 120:
        return f"{s:.{digits}g} s"
    return f"{s / 60:.{digits}g} min" if abs(s) < 7200 else f"{s / 3600:.{digits}g} h"


class HumanFormatter(Formatter):
    """Tick labels in human units (`fmt(value, digits)`), with more digits where 3 would repeat a label
    (645.5 and 646 MiB both print '646 MiB')."""

    def __init__(self, fmt: Callable[..., str]) -> None:
        self.fmt = fmt

    def __call__(self, x: float, pos: int | None = None) -> str:
        return self.fmt(x)

    def format_ticks(self, values) -> list[str]:
        labels: list[str] = []
        for digits in range(3, 8):
            labels = [self.fmt(v, digits) for v in values]
            if len(set(labels)) == len(labels):
                break
        return labels


def _draw_interval(ax, pos: float, mean: float, lo: float, hi: float, bounds: tuple[float, float], color: str,
                   vertical: bool, lw: float = 1.5, cap: bool = True, marker: str | None = "o",
                   ms: float = 6) -> bool:
    """The mean's marker and the interval at `pos`, clipped to bounds (an arrow head marks a clipped end).
    Returns whether an end was clipped."""
    mean, lo, hi = finite_or_nan(mean), finite_or_nan(lo), finite_or_nan(hi)

    def xy(along: float) -> tuple[float, float]:
        return (pos, along) if vertical else (along, pos)

    cut = False
    if not (math.isnan(lo) or math.isnan(hi)):
        lo_c, hi_c, low_cut, high_cut = clip_interval(lo, hi, bounds)
        (x0, y0), (x1, y1) = xy(lo_c), xy(hi_c)
        ax.plot([x0, x1], [y0, y1], color=color, lw=lw, solid_capstyle="butt")
        ends = ((lo_c, low_cut, "v" if vertical else "<"), (hi_c, high_cut, "^" if vertical else ">"))
        for end, is_cut, head in ends:
            if is_cut:
                ax.plot(*xy(end), marker=head, ms=9, color=color, ls="none")
            elif cap:
                ax.plot(*xy(end), marker="_" if vertical else "|", ms=10, mew=lw, color=color, ls="none")
        cut = low_cut or high_cut
    if marker and not math.isnan(mean):
        ax.plot(*xy(mean), marker=marker, ms=ms, color=color, mec="white", mew=0.8, ls="none", zorder=5)
    return cut


def _seed_offsets(k: int, spread: float = 0.16) -> np.ndarray:
    """Small fixed offsets so that seeds with equal values stay visible side by side."""
    return np.zeros(k) if k <= 1 else np.linspace(-spread / 2, spread / 2, k)


def _human_axis(axis, fmt: Callable[[float], str], log: bool, nbins: int = 4) -> None:
    """Few, human-formatted major ticks; no minor tick labels (they overlapped on narrow panels)."""
    if log:
        axis.set_major_locator(LogLocator(base=10, numticks=nbins))
    else:
        axis.set_major_locator(MaxNLocator(nbins=nbins, min_n_ticks=2))
    axis.set_major_formatter(HumanFormatter(fmt))
    axis.set_minor_formatter(NullFormatter())


# ---------------------------------------------------------------- the verdict figure (top of the report)


def plot_verdicts(rows: Sequence[dict], tost: dict[str, tuple[float, float]] | None = None) -> Figure | None:
    """LoRA - full per task (one row each, each on its own x scale): the mean difference (diamond), its 95%
    interval (thin bar) and the equivalence test's 1 - 2 alpha interval (thick bar), both clipped to +-100,
    the +-margin band of the equivalence test, and each seed's difference as a dot; the verdict word at the
    right. `rows`: report.verdict_rows; `tost`: {task (task/arm with named arms): (low, high)} of the
    equivalence interval."""
    if not rows:
        return None
    n = len(rows)
    fig = Figure(figsize=(11, 0.95 + 0.95 * n))
    axes = fig.subplots(n, 1, squeeze=False)[:, 0]
    clipped = False
    for ax, row in zip(axes, rows, strict=True):
        clipped |= _draw_verdict_row(ax, row, (tost or {}).get(str(row.get("pair") or row.get("task"))))
    named = any(r.get("arm_label") for r in rows)
    axes[-1].set_xlabel("arm − reference (points of the task's metric; right of 0: the arm better)" if named else
                        "LoRA − full (points of the task's metric; right of 0: LoRA better)")
    handles = [Line2D([], [], marker="D", color="#444", ls="none", label="mean difference"),
               Line2D([], [], color="#444", lw=1.5, label="95% CI"),
               Line2D([], [], color="#444", lw=5, label="equivalence-test CI (TOST)"),
               Line2D([], [], **SEED_DOT, label="one seed"),
               Patch(color=BAND_COLOR, alpha=0.15, label="± equivalence margin")]
    if clipped:
        handles.append(Line2D([], [], marker=">", color="#444", ls="none", label="clipped at ±100"))
    fig.legend(handles=handles, loc="upper center", ncol=len(handles), fontsize=8, frameon=False)
    fig.subplots_adjust(left=0.16 if named else 0.13, right=0.86, top=1 - 0.55 / (0.95 + 0.95 * n),
                        bottom=0.6 / (0.95 + 0.95 * n), hspace=0.55)
    return fig


def _draw_verdict_row(ax, row: dict, tost: tuple[float, float] | None) -> bool:
    """One task's panel of the verdict figure; returns whether an interval was clipped."""
    word = str(row.get("word") or "")
    color = WORD_COLORS.get(word, "#555555")
    diff, lo, hi, margin = (finite_or_nan(row.get(k)) for k in ("difference", "ci_low", "ci_high", "margin"))
    seeds = [v for v in map(finite_or_nan, (row.get("seed_differences") or {}).values()) if not math.isnan(v)]
    if not math.isnan(margin):
        ax.axvspan(-margin, margin, color=BAND_COLOR, alpha=0.15, lw=0)
    ax.axvline(0, color="#555555", lw=0.8)
    cut = False
    if tost is not None:
        cut |= _draw_interval(ax, 0.12, math.nan, tost[0], tost[1], DIFF_RANGE, color, vertical=False, lw=5,
                              cap=False, marker=None)
    cut |= _draw_interval(ax, 0.12, diff, lo, hi, DIFF_RANGE, color, vertical=False, marker="D", ms=7)
    if seeds:
        ax.plot(seeds, -0.3 + _seed_offsets(len(seeds)), **SEED_DOT, zorder=6)
    ax.set_ylim(-0.62, 0.5)
    ax.set_yticks([])
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    ax.grid(axis="x", alpha=0.3)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=8))
    ax.set_xlim(*_verdict_xlim([diff, lo, hi, *(tost or ()), *seeds], margin))
    metric = row.get("metric") or ""
    reference = "full" if row.get("reference_label") == "full fine-tuning" else row.get("reference_label")
    what = f"{row['arm_label']} − {reference}" if row.get("arm_label") else metric
    ax.text(-0.012, 0.5, f"{row.get('task', '')}\n{what}", transform=ax.transAxes, ha="right", va="center",
            fontsize=10, fontweight="bold")
    ax.text(1.012, 0.5, word or "?", transform=ax.transAxes, ha="left", va="center", fontsize=11,
            fontweight="bold", color=color)
    notes = []
    if cut:
        notes.append("interval clipped at ±100")
    if math.isnan(lo) and not math.isnan(diff):
        notes.append("no seed-level interval" + (": see the table" if row.get("seed_test_undefined_reason") else ""))
    if math.isnan(diff) and not seeds:
        notes.append("nothing to compare")
    if notes:
        ax.text(0.995, 0.96, "; ".join(notes), transform=ax.transAxes, ha="right", va="top", fontsize=7.5,
                color="#444444")
    return cut


def _verdict_xlim(values: Sequence[float], margin: float) -> tuple[float, float]:
    finite = [min(max(v, DIFF_RANGE[0]), DIFF_RANGE[1]) for v in values if not math.isnan(finite_or_nan(v))]
    if not math.isnan(margin):
        finite += [-1.6 * margin, 1.6 * margin]
    if not finite:
        return -1.0, 1.0
    lo, hi = min(finite), max(finite)
    pad = 0.06 * (hi - lo) or 1.0
    return max(lo - pad, DIFF_RANGE[0] - 4), min(hi + pad, DIFF_RANGE[1] + 4)


# ---------------------------------------------------------------- scores per task


def plot_metric_by_task(comparison: pd.DataFrame, headline: pd.DataFrame | None = None) -> Figure:
    """Test primary metric (points) per task and method: mean with its 95% t-interval over seeds, clipped to
    0-100 (an arrow head marks a clipped end), and each seed's score as a dot."""
    fig = Figure(figsize=(1.8 + 1.6 * max(len(comparison), 1), 4))
    ax = fig.add_subplot()
    x = np.arange(len(comparison))
    clipped = False
    for i, method in enumerate(METHODS):
        for xi, (_, r) in zip(x + (i - 0.5) * 0.34, comparison.iterrows(), strict=True):
            clipped |= _draw_interval(ax, xi, r.get(f"{method}_mean"), r.get(f"{method}_ci_low"),
                                      r.get(f"{method}_ci_high"), SCORE_RANGE, COLORS[method], vertical=True)
            values = _seed_values(headline, r["task"], method)
            ax.plot(xi + 0.1 + _seed_offsets(len(values), 0.06), values, **SEED_DOT)
        ax.plot([], [], "o", color=COLORS[method], label=f"{LABELS[method]} (mean, 95% CI)")
    ax.plot([], [], **SEED_DOT, label="one seed")
    ax.set_xticks(x, [f"{t}\n({m})" for t, m in zip(comparison["task"], comparison["metric"], strict=True)])
    ax.set_xlim(-0.6, max(len(comparison), 1) - 0.4)
    ax.set_ylim(-3, 103)
    ax.set_ylabel("test primary metric (points)")
    ax.set_title("Test metric per task" + (" (intervals clipped to 0-100)" if clipped else ""))
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def _seed_values(headline: pd.DataFrame | None, task: str, method: str) -> np.ndarray:
    if headline is None or headline.empty or "test_primary" not in headline:
        return np.array([])
    rows = headline[(headline["task"] == task) & (headline["method"] == method)]
    return rows["test_primary"].dropna().to_numpy(float)


# ---------------------------------------------------------------- training curves, cost, sweep


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


def plot_metric_vs_cost(efficiency: pd.DataFrame, cost: str, xlabel: str, log_x: bool,
                        fmt: Callable[[float], str] = human_count) -> Figure:
    """Test primary metric (mean, 95% CI clipped to 0-100) against a cost column (trainable params, peak
    memory), per task; few human-formatted ticks (no minor labels: they overlapped on these narrow panels)."""
    tasks = ordered_tasks(efficiency["task"])
    fig = Figure(figsize=(3.2 * max(len(tasks), 1), 3.4))
    axes = fig.subplots(1, max(len(tasks), 1), squeeze=False)[0]
    for ax, task in zip(axes, tasks, strict=False):
        rows = efficiency[efficiency["task"] == task]
        for _, r in rows.iterrows():
            if pd.isna(r[cost]):
                continue
            _draw_interval(ax, float(r[cost]), r["test_primary_mean"], r["test_primary_ci_low"],
                           r["test_primary_ci_high"], SCORE_RANGE, COLORS[r["method"]], vertical=True)
            ax.plot([], [], "o", color=COLORS[r["method"]], label=LABELS[r["method"]])
        log = log_x and bool((rows[cost] > 0).all())
        if log:
            ax.set_xscale("log")
        ax.margins(x=0.3)
        _human_axis(ax.xaxis, fmt, log, nbins=3 if not log else 4)
        ax.set_title(task)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test primary metric (points)")
    if tasks and axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


PARETO_COSTS = (("params_trainable", "trainable parameters", True, human_count),
                ("peak_memory_mib", "peak memory", False, human_mib),
                ("wall_s", "time per run", False, human_seconds))
FRONT_COLOR = "#2a9d8f"


def plot_pareto(efficiency: pd.DataFrame, rows: Sequence[dict], labels: dict[str, str],
                reference: str) -> Figure | None:
    """Per task (rows) and cost (columns: trainable parameters, peak memory, time per run), every arm's test
    primary metric (mean, 95% CI over seeds) against its cost, and the Pareto front (report.pareto: through the
    arms whose comparison with the reference is decided; an undecided arm is a hollow marker). `rows`: the
    verdict rows (named arms); None when there is nothing to draw."""
    from tunebench.report.pareto import REFERENCE, pareto_front

    tasks = ordered_tasks(efficiency["task"]) if len(efficiency) else []
    if not tasks:
        return None
    words = {(r["task"], r.get("arm")): r.get("word") for r in rows}
    fig = Figure(figsize=(4.2 * len(PARETO_COSTS), 3.3 * len(tasks)))
    axes = fig.subplots(len(tasks), len(PARETO_COSTS), squeeze=False)
    for i, task in enumerate(tasks):
        arms = efficiency[efficiency["task"] == task]
        score = arms.set_index("arm")["test_primary_mean"]
        for j, (cost, xlabel, log_x, fmt) in enumerate(PARETO_COSTS):
            ax = axes[i][j]
            points = {}
            for _, r in arms.iterrows():
                x = finite_or_nan(r.get(cost))
                if math.isnan(x):
                    continue
                word = REFERENCE if r["arm"] == reference else words.get((task, r["arm"]))
                points[r["arm"]] = (x, word)
                decided = word in (REFERENCE, "better", "matches", "worse")
                color = COLORS.get(str(r["method"]), "#555")
                _draw_interval(ax, x, r["test_primary_mean"], r["test_primary_ci_low"], r["test_primary_ci_high"],
                               SCORE_RANGE, color, vertical=True, marker=None)
                ax.plot(x, r["test_primary_mean"], "o", ms=7, color=color if decided else "white", mec=color,
                        mew=1.5, zorder=5)
                ax.annotate(labels.get(r["arm"]) or LABELS.get(str(r["arm"]), str(r["arm"])),
                            (x, r["test_primary_mean"]), xytext=(5, 4), textcoords="offset points", fontsize=7)
            front = pareto_front(points)
            if len(front) > 1:
                ax.plot([points[a][0] for a in front], [score[a] for a in front],
                        color=FRONT_COLOR, lw=2, alpha=0.6, zorder=1)
            for a in front:
                ax.plot(points[a][0], score[a], "o", ms=13,
                        mfc="none", mec=FRONT_COLOR, mew=2, zorder=4)
            log = log_x and all(p[0] > 0 for p in points.values())
            if log:
                ax.set_xscale("log")
            ax.margins(x=0.25)
            _human_axis(ax.xaxis, fmt, log, nbins=3 if not log else 4)
            ax.set_xlabel(xlabel)
            ax.grid(alpha=0.3)
            if j == 0:
                ax.set_ylabel(f"{task}: test primary metric (points)")
    handles = [Line2D([], [], marker="o", color="#555", ls="none", label="decided against the reference"),
               Line2D([], [], marker="o", color="#555", mfc="white", ls="none", label="undecided"),
               Line2D([], [], marker="o", ms=11, mfc="none", mec=FRONT_COLOR, mew=2, color=FRONT_COLOR, lw=2,
                      alpha=0.8, label="Pareto front (decided arms)")]
    fig.legend(handles=handles, loc="upper center", ncol=3, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / (3.3 * len(tasks))))
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


# ---------------------------------------------------------------- efficiency, stability, generalization

EFFICIENCY_PANELS = (  # column, title, formatter, log scale
    ("params_trainable", "trainable parameters", human_count, True),
    ("peak_memory_mib", "peak memory", human_mib, False),
    ("wall_s", "wall time per run", human_seconds, False),
    ("tokens_per_s", "training tokens / s", human_count, False),
)


ARM_PALETTE = ("#1f77b4", "#2a9d8f", "#e9c46a", "#9d4edd", "#f4a261", "#6c757d", "#8ecae6")


def arm_styles(efficiency: pd.DataFrame, labels: dict[str, str] | None = None) -> list[tuple[str, str, str]]:
    """(arm, colour, legend label) per arm of a table, in its row order: the study's two arms in their
    colours (LoRA, full FT); named arms one palette colour each, full fine-tuning's red (tunebench.arms)."""
    arms = efficiency["arm"] if "arm" in efficiency else efficiency["method"]
    methods = dict(zip(arms, efficiency["method"], strict=True))
    out, k = [], 0
    for arm in dict.fromkeys(arms):
        if arm in COLORS:
            out.append((arm, COLORS[arm], LABELS[arm]))
            continue
        color = COLORS["full"] if methods[arm] == "full" else ARM_PALETTE[k % len(ARM_PALETTE)]
        k += methods[arm] != "full"
        out.append((arm, color, (labels or {}).get(arm, arm)))
    return out


def plot_efficiency(efficiency: pd.DataFrame, labels: dict[str, str] | None = None) -> Figure | None:
    """Per task, the arms side by side (LoRA and full in the study): trainable parameters (log), peak memory,
    wall time and training throughput, each bar labelled in human units."""
    tasks = ordered_tasks(efficiency["task"])
    if not tasks:
        return None
    styles = arm_styles(efficiency, labels)
    fig = Figure(figsize=(12, 1.3 + 0.31 * len(tasks) * max(len(styles), 2)))
    axes = fig.subplots(1, len(EFFICIENCY_PANELS), squeeze=False)[0]
    y = np.arange(len(tasks))
    height = 0.76 / len(styles)
    arms = efficiency["arm"] if "arm" in efficiency else efficiency["method"]
    for ax, (column, title, fmt, log) in zip(axes, EFFICIENCY_PANELS, strict=True):
        values_all = []
        for i, (arm, color, label) in enumerate(styles):
            e = efficiency[arms == arm].set_index("task")
            values = np.array([finite_or_nan(e[column].get(t)) if column in e else math.nan for t in tasks])
            pos = y + (i - (len(styles) - 1) / 2) * height
            ok = ~np.isnan(values)
            ax.barh(pos[ok], values[ok], height=height * 0.95, color=color, label=label)
            for p, v in zip(pos[ok], values[ok], strict=True):
                ax.text(v, p, " " + fmt(v), va="center", ha="left", fontsize=7.5)
            values_all += list(values[ok])
        positive = [v for v in values_all if v > 0]
        use_log = log and bool(positive)
        if use_log:
            ax.set_xscale("log")
            ax.set_xlim(min(positive) / 3, max(positive) * 30)   # room for the labels right of the bars
        elif values_all:
            ax.set_xlim(0, max(max(values_all), 1e-9) * 1.45)
        _human_axis(ax.xaxis, fmt, use_log, nbins=3)
        ax.set_title(title, fontsize=10)
        ax.set_yticks(y, tasks if ax is axes[0] else [""] * len(tasks))
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower right")
    kinds = sorted(set(efficiency["memory_kind"].dropna().astype(str))) if "memory_kind" in efficiency else []
    if kinds:
        axes[1].set_xlabel(", ".join(kinds), fontsize=8)
    fig.tight_layout()
    return fig


def plot_stability(headline: pd.DataFrame) -> Figure | None:
    """Seed-to-seed spread: each seed's test score (dots) per task and method, the mean as a bar, the sd
    under the method's name; one panel per task, each on its own scale (within 0-100)."""
    if headline.empty or "test_primary" not in headline:
        return None
    tasks = ordered_tasks(headline["task"])
    if not tasks:
        return None
    fig = Figure(figsize=(max(2.6 * len(tasks), 6), 3.2))
    axes = fig.subplots(1, len(tasks), squeeze=False)[0]
    for ax, task in zip(axes, tasks, strict=True):
        lows, highs, ticks = [], [], []
        for i, method in enumerate(METHODS):
            values = _seed_values(headline, task, method)
            sd = float(values.std(ddof=1)) if len(values) > 1 else math.nan
            ticks.append(f"{LABELS[method]}\n" + (f"sd {sd:.2g}" if not math.isnan(sd) else
                                                   f"{len(values)} seed" + ("" if len(values) == 1 else "s")))
            if not len(values):
                continue
            ax.plot(i + _seed_offsets(len(values), 0.25), values, "o", ms=6, color=COLORS[method], alpha=0.8,
                    ls="none")
            mean = float(values.mean())
            ax.plot([i - 0.25, i + 0.25], [mean, mean], color=COLORS[method], lw=2)
            lows.append(float(values.min()))
            highs.append(float(values.max()))
        if lows:  # own scale, never far outside 0-100
            span = max(max(highs) - min(lows), 2.0)
            ax.set_ylim(max(min(lows) - 0.3 * span, SCORE_RANGE[0] - 0.04 * span),
                        min(max(highs) + 0.3 * span, SCORE_RANGE[1] + 0.04 * span))
        ax.yaxis.set_major_locator(MaxNLocator(nbins=5))
        ax.set_xticks([0, 1], ticks)
        ax.set_xlim(-0.6, 1.6)
        ax.set_title(task, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("test primary metric (points)")
    fig.tight_layout()
    return fig


def plot_generalization(headline: pd.DataFrame) -> Figure | None:
    """Train (re-scored train subset) against test score per task and method (means over seeds): a segment
    from test (dot) to train (triangle), the gap written beside it. None without train_eval scores."""
    if headline.empty or "train_eval_primary" not in headline or headline["train_eval_primary"].isna().all():
        return None
    tasks = ordered_tasks(headline["task"])
    fig = Figure(figsize=(max(1.8 * len(tasks) + 1.5, 6), 3.4))
    ax = fig.add_subplot()
    for j, task in enumerate(tasks):
        for i, method in enumerate(METHODS):
            g = headline[(headline["task"] == task) & (headline["method"] == method)]
            pair = g[["train_eval_primary", "test_primary"]].dropna()
            if pair.empty:
                continue
            x = j + (i - 0.5) * 0.36
            train, test = float(pair["train_eval_primary"].mean()), float(pair["test_primary"].mean())
            ax.plot([x, x], [test, train], color=COLORS[method], lw=2)
            ax.plot(x, test, "o", ms=7, color=COLORS[method])
            ax.plot(x, train, "^", ms=7, mfc="white", mec=COLORS[method], mew=1.5)
            ax.annotate(f"{train - test:+.1f}", (x, (train + test) / 2), xytext=(5, 0), textcoords="offset points",
                        va="center", fontsize=8)
    handles = [Line2D([], [], marker="^", mfc="white", mec="#444", ls="none", label="train (re-scored subset)"),
               Line2D([], [], marker="o", color="#444", ls="none", label="test"),
               *[Line2D([], [], color=COLORS[m], lw=2, label=LABELS[m]) for m in METHODS]]
    ax.legend(handles=handles, fontsize=8, loc="lower left", ncol=2)
    ax.set_xticks(range(len(tasks)), tasks)
    ax.set_xlim(-0.6, len(tasks) - 0.4)
    ax.set_ylim(SCORE_RANGE[0] - 3, SCORE_RANGE[1] + 3)
    ax.set_ylabel("primary metric (points)")
    ax.set_title("Generalization gap: train - test (mean over seeds)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- all figures


def build_figures(comparison: pd.DataFrame, curves: pd.DataFrame, headline: pd.DataFrame,
                  efficiency: pd.DataFrame, settings: pd.DataFrame,
                  labels: dict[str, str] | None = None) -> dict[str, bytes]:
    """Every report figure as {file name: PNG bytes}; plots with nothing to show are left out. The verdict
    figure needs the verdict rows and is drawn by render (`plot_verdicts`). With named arms (`labels`) only the
    efficiency figure, by arm: the others compare LoRA with full fine-tuning (the report adds the Pareto figure)."""
    figs: dict[str, Figure | None] = {}
    if labels:      # named arms: the figures below draw LoRA and full; the Pareto figure and the tables by arm
        return {"efficiency.png": render_png(f)} if len(efficiency) and (f := plot_efficiency(efficiency, labels)) \
            else {}
    if len(comparison):
        comparison = comparison[comparison["lora_n"] + comparison["full_n"] > 0]  # tasks with ok runs
    if len(comparison):
        figs["metric_by_task.png"] = plot_metric_by_task(comparison, headline)
    if len(efficiency):
        figs["efficiency.png"] = plot_efficiency(efficiency, labels)
    if len(headline):
        figs["stability.png"] = plot_stability(headline)
        figs["generalization.png"] = plot_generalization(headline)
    if len(curves) and len(headline):
        figs["loss_curves.png"] = plot_loss_curves(curves, headline)
    if len(efficiency):
        figs["metric_vs_params.png"] = plot_metric_vs_cost(efficiency, "params_trainable", "trainable parameters",
                                                           log_x=True)
        figs["metric_vs_memory.png"] = plot_metric_vs_cost(efficiency, "peak_memory_mib", "peak memory",
                                                           log_x=False, fmt=human_mib)
    if len(settings):
        figs["lr_sweep.png"] = plot_lr_sweep(settings)
    return {name: render_png(f) for name, f in figs.items() if f is not None}
