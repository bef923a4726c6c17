"""Run identity (tunebench.results): ids hash only what the method reads, and results written under the
earlier scheme (a digest of the whole config) still read in the report."""

from __future__ import annotations

import hashlib
import json

import pytest

from fake_results import write_fake_run, write_selection
from tunebench.config import Config, with_overrides
from tunebench.report.build import build_report
from tunebench.report.collect import collect_runs
from tunebench.results import effective_config, run_id, setting_id


def old_run_id(cfg: Config) -> str:
    """The scheme before effective_config: the whole config minus experiment, output_dir, tracking, data.dir."""
    tree = cfg.model_dump()
    for key in ("experiment", "output_dir", "tracking"):
        tree.pop(key)
    tree["data"].pop("dir")
    digest = hashlib.sha1(json.dumps(tree, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:8]
    return f"{cfg.task}-{cfg.method}-s{cfg.training.seed}-{digest}"


@pytest.mark.parametrize("method,ignored,read", [
    ("full", {"lora.r": 64, "lora.dropout": 0.0, "training.learning_rate": 1e-3},
     {"training.full_finetune_learning_rate": 1e-5}),
    ("lora", {"training.full_finetune_learning_rate": 1e-5}, {"lora.r": 64, "training.learning_rate": 1e-3}),
])
def test_run_id_changes_only_with_what_the_method_reads(method, ignored, read):
    cfg = with_overrides(Config(), {"method": method})
    for key, value in ignored.items():
        assert run_id(with_overrides(cfg, {key: value})) == run_id(cfg), key
    for key, value in read.items():
        assert run_id(with_overrides(cfg, {key: value})) != run_id(cfg), key
    where = {"experiment": "other", "output_dir": "elsewhere", "tracking.backend": "none", "data.dir": "d2"}
    assert run_id(with_overrides(cfg, where)) == run_id(cfg)


def test_effective_config_of_a_saved_config_matches_the_config():
    cfg = with_overrides(Config(), {"method": "full"})
    saved = json.loads(json.dumps(cfg.model_dump()))
    assert effective_config(saved) == effective_config(cfg)
    assert "lora" not in effective_config(cfg) and "learning_rate" not in effective_config(cfg)["training"]
    assert setting_id(saved) == setting_id(with_overrides(cfg, {"training.seed": 7}))


def write_run(root, cfg: Config, rid: str, validation: float, test: float):
    lr = cfg.learning_rate
    folder = write_fake_run(root, cfg.task, cfg.method, cfg.training.seed, experiment=cfg.experiment,
                            learning_rate=lr, lora_r=cfg.lora.r, validation=validation, test=test,
                            config=json.loads(json.dumps(cfg.model_dump())))
    renamed = folder.with_name(rid)   # the folder and its metrics.json carry the id the runner gave it
    folder.rename(renamed)
    metrics = json.loads((renamed / "metrics.json").read_text())
    (renamed / "metrics.json").write_text(json.dumps(metrics | {"run_id": rid}))
    return renamed


def test_results_written_under_the_old_run_ids_still_report(tmp_path):
    """Seeds 1-3 under old ids; seed 3 again under its new id (a plan re-run after the change): one setting,
    three seeds, the selection.json still matched, the old ids kept in the table."""
    base = with_overrides(Config(), {"experiment": "phase2a", "task": "rte", "tracking.backend": "none"})
    old_ids = []
    for method, lr_key, good, bad in (("lora", "training.learning_rate", 2e-4, 1e-3),
                                      ("full", "training.full_finetune_learning_rate", 5e-5, 1e-4)):
        for seed in (1, 2, 3):
            for lr, val in ((good, 0.70), (bad, 0.80)):   # validation prefers `bad`; selection.json says `good`
                cfg = with_overrides(base, {"method": method, "training.seed": seed, lr_key: lr})
                old_ids.append(old_run_id(cfg))
                assert old_ids[-1] != run_id(cfg)
                write_run(tmp_path, cfg, old_ids[-1], val, 0.6 + seed / 100)
        cfg = with_overrides(base, {"method": method, "training.seed": 3, lr_key: good})
        write_run(tmp_path, cfg, run_id(cfg), 0.70, 0.63)
    write_selection(tmp_path, "phase2a", {"rte": {
        "lora": {"overrides": {"training.learning_rate": 2e-4}, "learning_rate": 2e-4},
        "full": {"overrides": {"training.full_finetune_learning_rate": 5e-5}, "learning_rate": 5e-5}}})

    runs = collect_runs(tmp_path)
    assert (runs["status"] == "ok").all() and len(runs) == 14
    assert set(old_ids) <= set(runs["run_id"])
    assert runs.groupby(["method", "learning_rate"])["setting_id"].nunique().eq(1).all()

    r = build_report(tmp_path, with_figures=False, n_resamples=300)
    chosen = r.settings[r.settings["selected"]].set_index("method")
    assert chosen.loc["lora", "learning_rate"] == 2e-4 and chosen.loc["full", "learning_rate"] == 5e-5
    assert chosen["selection"].str.startswith("selection.json").all()
    assert chosen["n_seeds"].tolist() == [3, 3]      # the re-run of seed 3 is counted once
    assert sum("counted once" in n for n in r.notes) == 2
