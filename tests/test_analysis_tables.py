"""Tables and figures from (metrics.json, analysis.json) pairs (tunebench.analysis.tables / figures)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tunebench.analysis.figures import FIGURE_CAPTIONS, analysis_figures
from tunebench.analysis.tables import analysis_tables, upgrade_analysis

TYPES = (("q_proj", "attention"), ("down_proj", "mlp"))


def make_pair(method: str, seed: int, r: int | None, accuracy: float, delta_loss: float,
              erank: int) -> tuple[dict, dict]:
    """A run with two layers x (q_proj, down_proj) in analysis.json schema 2; every matrix has energy rank
    `erank` + layer, Roy-Vetterli effective rank half that, and one intruder in layer 0's q_proj for LoRA."""
    run = f"mrpc-{method}-r{r}-s{seed}"
    metrics = {"run_id": run, "experiment": "rank_sweep", "status": "ok", "task": "mrpc", "method": method,
               "seed": seed, "lora_r": r, "primary_metric": "f1", "test": {"f1": accuracy, "accuracy": 0.5}}
    spectrum = []
    for layer in (0, 1):
        for kind, group in TYPES:
            intruders = 1 if method == "lora" and layer == 0 and kind == "q_proj" else 0
            spectrum.append({"module": f"model.layers.{layer}.x.{kind}", "layer": layer, "type": kind,
                             "group": group, "energy_rank": erank + layer,
                             "effective_rank": (erank + layer) / 2, "stable_rank": 1.0 + layer,
                             "intruders": intruders, "top_singular_values": [2.0, 1.0], "fro_norm": 3.0,
                             "rel_fro_norm": 0.1})
    ranks = [m["energy_rank"] for m in spectrum]
    analysis = {
        "schema": 2, "run_id": run, "method": method, "lora_r": r, "settings": {"energy": 0.9},
        "forgetting": {"text": "builtin", "tokens": 100, "loss_before": 2.0, "loss_after": 2.0 + delta_loss,
                       "ppl_before": math.exp(2.0), "ppl_after": math.exp(2.0 + delta_loss),
                       "delta_loss": delta_loss},
        "spectrum": spectrum,
        "summary": {"n_matrices": 4, "mean_energy_rank": float(np.mean(ranks)), "max_energy_rank": max(ranks),
                    "mean_effective_rank": float(np.mean(ranks)) / 2, "mean_stable_rank": 1.5,
                    "intruders_total": sum(m["intruders"] for m in spectrum), "fro_norm_total": 6.0,
                    "by_group": {g: {"mean_energy_rank": erank + 0.5, "mean_effective_rank": (erank + 0.5) / 2,
                                     "mean_stable_rank": 1.5,
                                     "intruders_total": int(method == "lora" and g == "attention")}
                                 for _, g in TYPES}},
    }
    return metrics, analysis


def as_schema1(analysis: dict) -> dict:
    """The record as `tunebench analyze` wrote it before schema 2: the energy rank named effective_rank."""
    old = {k: v for k, v in analysis.items() if k != "schema"}
    old["spectrum"] = [{**{k: v for k, v in m.items() if k not in ("energy_rank", "effective_rank")},
                        "effective_rank": m["energy_rank"]} for m in analysis["spectrum"]]
    summary = analysis["summary"]
    old["summary"] = {**{k: v for k, v in summary.items() if "energy_rank" not in k and "effective" not in k},
                      "mean_effective_rank": summary["mean_energy_rank"],
                      "max_effective_rank": summary["max_energy_rank"],
                      "by_group": {g: {"mean_effective_rank": v["mean_energy_rank"], "mean_stable_rank": 1.5,
                                       "intruders_total": v["intruders_total"]}
                                   for g, v in summary["by_group"].items()}}
    return old


@pytest.fixture()
def pairs():
    out = []
    for seed, (acc_shift, dl_shift) in zip((1, 2), ((0.0, 0.0), (0.02, 0.02)), strict=True):
        out.append(make_pair("lora", seed, 1, 0.80 + acc_shift, 0.01 + dl_shift, 1))
        out.append(make_pair("lora", seed, 8, 0.84 + acc_shift, 0.03 + dl_shift, 6))
        out.append(make_pair("full", seed, None, 0.86 + acc_shift, 0.10 + dl_shift, 40))
    return out


def test_runs_table_one_row_per_run(pairs):
    runs = analysis_tables(pairs)["runs"]
    assert len(runs) == 6
    assert list(runs["setting"]) == ["LoRA r=1", "LoRA r=1", "LoRA r=8", "LoRA r=8", "full", "full"]
    assert runs["lora_r"].dtype == "Int64" and runs["lora_r"].isna().sum() == 2
    first = runs.iloc[0]
    assert first["test_primary"] == 0.80 and first["delta_loss"] == 0.01
    assert first["intruders_total"] == 1 and first["mean_energy_rank"] == 1.5 and first["mean_effective_rank"] == 0.75
    assert first["intruders_total_attention"] == 1 and first["intruders_total_mlp"] == 0
    assert first["mean_energy_rank_attention"] == 1.5 and first["mean_effective_rank_mlp"] == 0.75


def test_modules_and_layers_tables(pairs):
    tables = analysis_tables(pairs)
    modules, layers = tables["modules"], tables["layers"]
    assert len(modules) == 6 * 4
    assert set(modules.columns) >= {"module", "layer", "type", "group", "energy_rank", "effective_rank", "intruders",
                                    "top_singular_value", "energy"}
    assert len(layers) == 3 * 2 * 2                           # settings x layers x module types
    full_l1 = layers[(layers["method"] == "full") & (layers["layer"] == 1) & (layers["type"] == "q_proj")]
    assert full_l1["energy_rank"].item() == 41.0 and full_l1["effective_rank"].item() == 20.5
    assert full_l1["n_runs"].item() == 2
    lora_q0 = layers[(layers["lora_r"] == 8) & (layers["layer"] == 0) & (layers["type"] == "q_proj")]
    assert lora_q0["intruders"].item() == 1.0


def test_by_rank_means_and_sds_over_seeds(pairs):
    by_rank = analysis_tables(pairs)["by_rank"]
    assert list(by_rank["method"]) == ["lora", "lora", "full"]
    assert by_rank["lora_r"].iloc[:2].tolist() == [1, 8] and pd.isna(by_rank["lora_r"].iloc[2])
    r8 = by_rank[by_rank["lora_r"] == 8].iloc[0]
    assert r8["test_primary_mean"] == pytest.approx(0.85)
    assert r8["test_primary_sd"] == pytest.approx(0.02 / math.sqrt(2))
    assert r8["delta_loss_mean"] == pytest.approx(0.04)
    assert r8["intruders_total_mean"] == 1.0 and r8["intruders_total_sd"] == 0.0
    assert r8["n_runs"] == 2
    full = by_rank[by_rank["method"] == "full"].iloc[0]
    assert full["mean_energy_rank_mean"] == 40.5 and full["mean_effective_rank_mean"] == 20.25
    assert full["intruders_total_mean"] == 0.0


def test_figures_are_rendered(pairs):
    figures = analysis_figures(pairs)
    assert set(figures) == {"energy_rank_by_layer", "effective_rank_by_layer", "intruders_vs_rank",
                            "forgetting_vs_rank", "accuracy_vs_rank"} == set(FIGURE_CAPTIONS)
    for fig in figures.values():
        assert isinstance(fig, Figure)
        FigureCanvasAgg(fig).draw()
    ax = figures["forgetting_vs_rank"].axes[0]
    reference = [line for line in ax.lines if line.get_label() == "full FT"]
    assert reference and reference[0].get_ydata()[0] == pytest.approx(0.11)   # full's mean delta_loss
    assert len(figures["energy_rank_by_layer"].axes) == 2                      # attention, mlp x one task
    assert figures["energy_rank_by_layer"].axes[0].get_ylabel() == "energy rank of dW (90%)"
    assert figures["effective_rank_by_layer"].axes[0].get_ylabel() == "effective rank of dW (Roy-Vetterli)"


def test_schema1_records_read_their_effective_rank_as_the_energy_rank(pairs):
    old = [(m, as_schema1(a)) for m, a in pairs]
    before = [a["spectrum"][0]["effective_rank"] for _, a in old]
    tables = analysis_tables(old)
    assert [a["spectrum"][0]["effective_rank"] for _, a in old] == before       # the inputs are left alone
    new = analysis_tables(pairs)
    for name in ("runs", "modules", "layers", "by_rank"):
        energy = [c for c in new[name].columns if "energy_rank" in c]
        pd.testing.assert_frame_equal(tables[name][energy], new[name][energy])
        roy_vetterli = [c for c in new[name].columns if "effective_rank" in c]
        assert roy_vetterli and tables[name][roy_vetterli].isna().all().all()  # not computed in schema 1
    assert tables["runs"]["mean_energy_rank"].iloc[0] == 1.5 and tables["runs"]["max_energy_rank"].iloc[0] == 2
    upgraded = upgrade_analysis(old[0][1])
    assert upgraded["schema"] == 2 and upgraded["spectrum"][0]["energy_rank"] == 1
    assert math.isnan(upgraded["summary"]["by_group"]["mlp"]["mean_effective_rank"])
    assert upgrade_analysis(pairs[0][1]) is pairs[0][1]                          # schema 2: as it is
    figures = analysis_figures(old)
    assert "energy_rank_by_layer" in figures and "effective_rank_by_layer" not in figures  # nothing to draw


def test_no_pairs_give_empty_tables_and_no_figures():
    tables = analysis_tables([])
    assert all(df.empty for df in tables.values())
    assert analysis_figures([]) == {}


def test_error_bars_stay_inside_the_measures_range():
    """A mean +- sd bar never leaves the metric's range (accuracy 0.95 +- 0.1 stops at 1.0)."""
    import numpy as np

    from tunebench.analysis.figures import clipped_error, value_bounds

    assert value_bounds("test_primary", "sst2") == (0.0, 1.0)
    assert value_bounds("test_primary", "squad_v2") == (0.0, 100.0)
    assert value_bounds("intruders_total", "rte")[0] == 0.0
    err = clipped_error(np.array([0.95, 0.02, 0.5]), np.array([0.1, 0.1, 0.1]), (0.0, 1.0))
    assert np.allclose(err, [[0.1, 0.02, 0.1], [0.05, 0.1, 0.1]])
