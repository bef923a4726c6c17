"""The report page as a reader sees it: the verdict figure and table first, intervals inside
the metric's range, human units, long tables folded, methods last, verdicts.json rows; and, where Chromium is
installed, the page rendered headless at 1400 px."""

from __future__ import annotations

import dataclasses
import html
import io
import json
import math
import shutil
import subprocess

import numpy as np
import pytest

from fake_results import classification_predictions, write_fake_run
from tunebench.report.build import build_report
from tunebench.report.render import (
    clipped_interval_text,
    json_safe,
    render_html,
    render_markdown,
    verdict_table_rows,
    write_report,
)

SEEDS = (1, 2, 3)


def write_small_study(root) -> None:
    """sst2 (close arms, predictions), mrpc (F1 all over the place: a t-interval far beyond 0-100), rte with
    only a LoRA run."""
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 2, size=80)
    for seed in SEEDS:
        for method, acc in (("lora", 0.86), ("full", 0.87)):
            correct = rng.random(len(labels)) < acc
            write_fake_run(root, "sst2", method, seed, test={"accuracy": correct.mean(), "macro_f1": 0.8},
                           validation=acc, train_eval=0.95, predictions=classification_predictions(labels, correct))
    for seed, (lora, full) in zip(SEEDS, ((0.0, 0.9), (0.95, 0.0), (0.0, 0.85)), strict=True):
        write_fake_run(root, "mrpc", "lora", seed, test=lora, validation=0.6, train_eval=0.7)
        write_fake_run(root, "mrpc", "full", seed, test=full, validation=0.6, train_eval=0.7)
    write_fake_run(root, "rte", "lora", 1, test=0.6, validation=0.6)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    write_small_study(root)
    report = build_report(root, out_dir=root / "report", n_resamples=200)
    files = write_report(report, root / "report", analysis_label="plumbing check label")
    return report, files


def test_page_opens_with_the_verdict_figure_then_table_and_ends_with_methods(written):
    report, files = written
    page = files["report.html"].read_text(encoding="utf-8")
    order = [page.index('alt="verdict.png"'), page.index('class="tbl verdict"'), page.index("<h2>Efficiency"),
             page.index("<h2>Stability"), page.index("<h2>Generalization"), page.index("<h2>Details"),
             page.index("<h2>Methods")]
    assert order == sorted(order)
    assert page.rindex("<h2>") == page.index("<h2>Methods")  # the methods section is the last one
    for figure in ("efficiency.png", "stability.png", "generalization.png"):
        assert f'alt="{figure}"' in page
    assert "<script" not in page
    # the long tables are folded: each table in the Details section sits inside an open <details> element
    details = page[page.index("<h2>Details"):page.index("<h2>Methods")]
    tables = [i for i in range(len(details)) if details.startswith("<table", i)]
    assert len(tables) == 4
    assert all(details.rfind("<details", 0, i) > details.rfind("</details>", 0, i) for i in tables)
    # the sentences are there, lighter: in a <details> below the verdict table
    for sentence in report.verdicts.values():
        at = page.index(html.escape(sentence))
        assert at > page.index('class="tbl verdict"')
        assert page.rfind("<details", 0, at) > page.rfind("</details>", 0, at)


def test_verdict_table_has_one_row_per_task_with_a_word_and_the_interval_clipped(written):
    report, files = written
    rows = {d["task"]: d for d in verdict_table_rows(report)}
    assert set(rows) == {"sst2", "mrpc", "rte"}
    assert rows["rte"]["word"] == "no comparison" and rows["rte"]["full"] == "–"
    mrpc = next(r for r in report.verdict_rows if r["task"] == "mrpc")
    assert mrpc["ci_low"] < -100 or mrpc["ci_high"] > 100  # a t-interval on 3 wild seeds leaves the range
    assert rows["mrpc"]["clipped"] and rows["mrpc"]["difference"].endswith("‡")
    lo, hi = (float(x) for x in rows["mrpc"]["difference"].split("[")[1].rstrip("]‡").split(","))
    assert -100 <= lo <= hi <= 100
    page = files["report.html"].read_text(encoding="utf-8")
    assert "clipped to the metric" in page
    summary = files["summary.md"].read_text(encoding="utf-8")
    assert "| task | metric | LoRA | full |" in summary


def test_verdicts_json_holds_json_safe_rows(written):
    report, files = written
    text = files["verdicts.json"].read_text(encoding="utf-8")
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in verdicts.json"))
    assert set(data) == {"sst2", "mrpc", "rte"}
    sst2 = data["sst2"]
    for key in ("task", "metric", "word", "sentence", "lora", "full", "difference", "ci_low", "ci_high", "n_seeds",
                "seed_differences"):
        assert key in sst2, key
    assert set(sst2["seed_differences"]) == {"1", "2", "3"}
    assert data["rte"]["difference"] is None and data["rte"]["full"] is None  # NaN -> null
    assert sst2["sentence"] == report.verdicts["sst2"]


def test_json_safe_and_clipped_interval_text():
    assert json_safe({1: float("nan"), "a": [np.float64(2.5), np.int64(3), float("inf")], "b": None}) == \
        {"1": None, "a": [2.5, 3, None], "b": None}
    assert clipped_interval_text(-150.0, 40.0) == ("[-100.00, 40.00]", True)
    assert clipped_interval_text(-1.0, 2.0) == ("[-1.00, 2.00]", False)
    assert clipped_interval_text(float("nan"), 1.0) == ("", False)
    assert clipped_interval_text(-5.0, 120.0, (0.0, 100.0), 1) == ("[0.0, 100.0]", True)


def test_rows_with_the_new_fields_render_and_rows_without_them_do_not_crash(written):
    report, _ = written
    base = {"task": "rte", "metric": "accuracy", "word": "not learned", "sentence": "rte: not learned ...",
            "lora": 51.0, "full": 52.0, "difference": -1.0, "ci_low": math.nan, "ci_high": math.nan,
            "design": "paired", "p": math.nan, "margin": 1.0, "n_seeds": 3, "seed_differences": {1: -1.0, 2: -1.0},
            "p_adjusted": 0.2, "p_decision": 0.05, "decided_on": "examples",
            "baseline": {"name": "majority class", "value": 51.5},
            "seed_test_undefined_reason": "no spread across seeds"}
    minimal = {"task": "sst2"}
    other = dataclasses.replace(report, verdict_rows=[base, minimal], figures={})
    page = render_html(other)
    render_markdown(other)
    assert "not learned" in page and "majority class" in page and "51.5" in page
    assert "no spread across seeds" in page and "0.050 → 0.200 (examples)" in page
    assert "p (raw → Holm)" in page


def test_human_units():
    from tunebench.report.plots import HumanFormatter, human_count, human_mib, human_seconds

    assert human_count(1_234_567) == "1.23 M" and human_count(45_000) == "45 k" and human_count(950) == "950"
    assert human_mib(362.4) == "362 MiB" and human_mib(1434) == "1.4 GiB"
    assert human_seconds(45) == "45 s" and human_seconds(192) == "3.2 min" and human_seconds(9000) == "2.5 h"
    assert HumanFormatter(human_mib).format_ticks([645.0, 645.5, 646.0]) == ["645.0 MiB", "645.5 MiB", "646.0 MiB"]


def _tick_labels_overlap(fig) -> list[str]:
    """Pairs of overlapping x tick labels, per axes, after drawing."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    clashes = []
    for ax in fig.axes:
        boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in ax.get_xticklabels(which="both")
                 if t.get_visible() and t.get_text()]
        for i, (a, box_a) in enumerate(boxes):
            for b, box_b in boxes[i + 1:]:
                if box_a.overlaps(box_b):
                    clashes.append(f"{a!r} / {b!r}")
    return clashes


def test_memory_and_efficiency_panels_have_no_overlapping_tick_labels(written):
    from tunebench.report.plots import human_mib, plot_efficiency, plot_metric_vs_cost

    report, _ = written
    eff = report.efficiency.copy()
    eff["peak_memory_mib"] = np.where(eff["method"] == "lora", 623.0, 646.0)  # the demo's: a log axis over
    # a narrow range labelled its minor ticks, and they overlapped
    fig = plot_metric_vs_cost(eff, "peak_memory_mib", "peak memory", log_x=False, fmt=human_mib)
    assert not _tick_labels_overlap(fig)
    labels = [t.get_text() for ax in fig.axes for t in ax.get_xticklabels() if t.get_text()]
    assert labels and all("MiB" in t or "GiB" in t for t in labels)
    assert not _tick_labels_overlap(plot_efficiency(report.efficiency))


def test_verdict_figure_never_draws_outside_plus_minus_100():
    from tunebench.report.plots import plot_verdicts

    rows = [{"task": "mrpc", "metric": "f1", "word": "inconclusive", "difference": 10.0, "ci_low": -175.0,
             "ci_high": 195.0, "margin": 1.0, "seed_differences": {1: -60.0, 2: 0.0, 3: 90.0}},
            {"task": "rte", "metric": "accuracy", "word": "matches", "difference": 0.1, "ci_low": -0.2,
             "ci_high": 0.4, "margin": 1.0, "seed_differences": {"1": 0.1}},
            {"task": "sst2"}]  # nothing known: drawn empty, no crash
    fig = plot_verdicts(rows, {"mrpc": (-120.0, 140.0)})
    lo, hi = fig.axes[0].get_xlim()
    assert -105 <= lo and hi <= 105
    for line in fig.axes[0].get_lines():
        assert np.all(np.abs(np.asarray(line.get_xdata(), dtype=float)) <= 100)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Chromium not installed (Debian package chromium)")
def test_page_renders_in_headless_chromium(written, tmp_path):
    from PIL import Image

    _, files = written
    shot = tmp_path / "report.png"
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1400,3000",
                    files["report.html"].resolve().as_uri()], check=True, capture_output=True, timeout=180)
    image = Image.open(io.BytesIO(shot.read_bytes())).convert("RGB")
    assert image.size == (1400, 3000)
    pixels = np.asarray(image)
    ink = (pixels.min(axis=2) < 200).mean()          # share of pixels that are not (near) white
    colours = len(np.unique(pixels.reshape(-1, 3)[::7], axis=0))
    assert ink > 0.02 and colours > 50, (ink, colours)
    top = pixels[:1000]                                # the verdict figure is drawn in the first screen
    assert (top.min(axis=2) < 200).mean() > 0.02


def test_demo_keeps_full_weights_and_labels_its_analysis_a_plumbing_check(tmp_path, capsys):
    """The demo plan saves full fine-tuning's weights (so `tunebench analyze` can run on it); the demo's
    analysis step leaves runs already analysed alone; the label says the numbers are a plumbing check."""
    from pathlib import Path

    from tunebench.commands.demo import PLUMBING_LABEL, _analysis
    from tunebench.plan import load_plan

    plan = load_plan(Path(__file__).parents[1] / "configs" / "plans" / "demo.yaml")
    assert plan.base.training.save_full_model is True and plan.base.model.name == "tiny"
    run = write_fake_run(tmp_path, "sst2", "full", 1, test=0.9, validation=0.9)
    (run / "analysis.json").write_text("{}")
    assert _analysis(tmp_path, tiny=True) == 0
    assert "0 run(s) analysed, 1 already done or skipped, 0 failed" in capsys.readouterr().out
    assert "plumbing check" in PLUMBING_LABEL.lower() and "tiny" in PLUMBING_LABEL
