"""Plan files: format, precedence, the shipped plans, and one-line errors (exit 2) for malformed files."""

from __future__ import annotations

import pytest

from plan_helpers import PLANS_DIR, write_plan
from tunebench.cli import main
from tunebench.errors import TunebenchError
from tunebench.plan.expand import expand_final, expand_grid_final, expand_sweep, grid_points
from tunebench.plan.spec import load_plan

SHIPPED = sorted(PLANS_DIR.glob("*.yaml"))


def test_minimal_plan_defaults(tmp_path):
    plan = load_plan(write_plan(tmp_path, "name: mini\n"))
    assert plan.tasks == ("sst2", "mrpc", "rte", "squad_v2")
    assert plan.methods == ("lora", "full")
    assert plan.seeds == (42, 43, 44, 45, 46)
    assert not plan.two_stage and plan.stages == ("final",)
    assert plan.grid == {"lora": {}, "full": {}}
    assert plan.base.experiment == "mini"
    assert len(expand_grid_final(plan)) == 4 * 2 * 5


def test_flat_and_per_method_grids(tmp_path):
    flat = load_plan(write_plan(tmp_path, "name: a\nmethods: [lora]\ngrid: {lora.r: [4, 8], lora.alpha: [8, 16]}\n"))
    assert flat.grid == {"lora": {"lora.r": [4, 8], "lora.alpha": [8, 16]}}
    assert grid_points(flat.grid["lora"]) == [{"lora.r": 4, "lora.alpha": 8}, {"lora.r": 4, "lora.alpha": 16},
                                              {"lora.r": 8, "lora.alpha": 8}, {"lora.r": 8, "lora.alpha": 16}]
    per = load_plan(write_plan(tmp_path, """
        name: b
        grid:
          full: {training.full_finetune_learning_rate: [1e-5, 2e-5]}
        """))
    assert per.grid == {"lora": {}, "full": {"training.full_finetune_learning_rate": [1e-5, 2e-5]}}
    assert isinstance(per.grid["full"]["training.full_finetune_learning_rate"][0], float)  # YAML 1.1 '1e-5'


def test_precedence_files_overrides_command_line(tmp_path):
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "base.yaml").write_text("training: {num_train_epochs: 2, eval_steps: 7}\nlora: {r: 4}\n")
    path = write_plan(tmp_path, """
        name: prec
        config: exp/base.yaml            # relative to the plan file, not the cwd
        overrides:
          training: {eval_steps: 9}      # nested and dotted styles mean the same
          data.max_train_examples: 100
        tasks: [rte]
        sweep:
        """)
    plan = load_plan(path, overrides=["training.num_train_epochs=1"])
    t = plan.base.training
    assert (t.num_train_epochs, t.eval_steps, plan.base.lora.r) == (1, 9, 4)
    assert plan.base.data.max_train_examples == 100
    assert plan.sweep_seeds == (42,)  # a bare `sweep:` asks for the default sweep


def test_command_line_may_not_override_a_swept_key(tmp_path):
    path = write_plan(tmp_path, "name: x\ngrid: {lora: {training.learning_rate: [1e-4, 2e-4]}}\n")
    with pytest.raises(TunebenchError, match="swept by the plan's grid"):
        load_plan(path, overrides=["training.learning_rate=3e-4"])
    with pytest.raises(TunebenchError, match="set by the plan's `seeds:`"):
        load_plan(path, overrides=["training.seed=1"])


def test_task_overrides_apply_to_their_task_only_and_the_command_line_wins(tmp_path):
    path = write_plan(tmp_path, """
        name: per-task
        overrides: {training.max_steps: 10, data.max_train_examples: 100}
        task_overrides:
          squad_v2: {training.max_steps: 30, training: {eval_steps: 5}}
          rte: {data.max_train_examples: 50}
        tasks: [sst2, rte, squad_v2]
        methods: [lora]
        seeds: [1]
        grid: {lora: {training.learning_rate: [1.0e-4, 2.0e-4]}}
        sweep:
        """)
    plan = load_plan(path)
    assert plan.task_overrides == {"squad_v2": {"training.max_steps": 30, "training.eval_steps": 5},
                                   "rte": {"data.max_train_examples": 50}}
    for runs in (expand_sweep(plan), expand_grid_final(plan)):
        got = {(r.task, r.cfg.training.max_steps, r.cfg.training.eval_steps, r.cfg.data.max_train_examples)
               for r in runs}
        assert got == {("sst2", 10, 0.05, 100), ("rte", 10, 0.05, 50), ("squad_v2", 30, 5, 100)}
        assert {r.cfg.training.learning_rate for r in runs} == {1.0e-4, 2.0e-4}    # the grid still applies
    squad = [r for r in expand_sweep(plan) if r.task == "squad_v2"]
    sst2 = [r for r in expand_sweep(plan) if r.task == "sst2"]
    assert len({r.run_id for r in squad + sst2}) == 4
    cli = load_plan(path, overrides=["training.max_steps=2"])     # a smoke test from the command line wins
    assert {r.cfg.training.max_steps for r in expand_sweep(cli)} == {2}
    assert cli.task_overrides["squad_v2"] == {"training.eval_steps": 5}
    section = load_plan(path, overrides=["training={max_steps: 3, eval_steps: 1}"])    # a whole section too
    assert "squad_v2" not in section.task_overrides
    assert {(r.cfg.training.max_steps, r.cfg.training.eval_steps) for r in expand_sweep(section)} == {(3, 1)}


def test_task_seeds_give_one_task_its_own_final_seeds(tmp_path):
    path = write_plan(tmp_path, """
        name: per-task-seeds
        overrides: {model.name: tiny, tracking.backend: none}
        tasks: [sst2, rte]
        methods: [lora, full]
        seeds: [42, 43, 44, 45, 46]
        task_seeds: {rte: [42, 43, 44]}
        grid: {lora: {training.learning_rate: [1.0e-4, 2.0e-4]}}
        sweep:
        """)
    plan = load_plan(path)
    assert plan.seeds_of("sst2") == (42, 43, 44, 45, 46) and plan.seeds_of("rte") == (42, 43, 44)
    assert plan.seeds_text() == "[42, 43, 44, 45, 46]; rte [42, 43, 44]"
    seeds = {}
    for r in expand_grid_final(plan):
        seeds.setdefault((r.task, r.method, r.setting), []).append(r.seed)
    assert seeds == {(t, m, s): [42, 43, 44, 45, 46] if t == "sst2" else [42, 43, 44]
                     for t, m, s in seeds} and len(seeds) == 2 * 3
    selection = {t: {m: {"overrides": {}} for m in ("lora", "full")} for t in ("sst2", "rte")}
    final = [(r.task, r.seed) for r in expand_final(plan, selection)]
    assert final == [("sst2", s) for s in range(42, 47)] * 2 + [("rte", s) for s in (42, 43, 44)] * 2
    assert {r.seed for r in expand_sweep(plan)} == {42}            # the sweep keeps its own seeds
    # the same runs as a plan without task_seeds, less rte's seeds 45 and 46: no run id changes
    without = load_plan(write_plan(tmp_path, path.read_text().replace("task_seeds: {rte: [42, 43, 44]}\n", ""),
                                   name="without.yaml"))
    assert without.task_seeds == {}
    ids = {r.run_id for r in expand_grid_final(plan)}
    assert ids == {r.run_id for r in expand_grid_final(without) if r.task == "sst2" or r.seed < 45}


@pytest.mark.parametrize(("text", "message"), [
    ("tasks: [sst2]\ntask_seeds: {rte: [1]}", "task_seeds.rte: task 'rte' is not in tasks ['sst2']"),
    ("task_seeds: {rte: []}", "task_seeds.rte"),
    ("task_seeds: {rte: [1, 1]}", "task_seeds.rte"),
    ("task_seeds: {cola: [1]}", "task_seeds.cola"),
])
def test_bad_task_seeds_are_one_line(tmp_path, text, message):
    path = write_plan(tmp_path, f"name: x\n{text}\n")
    with pytest.raises(TunebenchError, match=None) as e:
        load_plan(path)
    assert message in str(e.value) and str(path) in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_plans_validate_and_expand(path):
    plan = load_plan(path)
    sweep = expand_sweep(plan)
    if plan.two_stage:
        assert sweep
        first = {t: {m: {"overrides": grid_points(plan.grid[m])[0]} for m in plan.methods} for t in plan.tasks}
        final = expand_final(plan, first)
    else:
        final = expand_final(plan)
    assert final and len({r.run_id for r in final}) == len(final)
    assert all(r.cfg.experiment == plan.name for r in final)


def test_shipped_plans_match_the_study():
    demo = load_plan(PLANS_DIR / "demo.yaml")
    assert (demo.base.model.name, demo.base.data.source, demo.base.tracking.backend) == ("tiny", "builtin", "none")
    assert len(demo.tasks) * len(demo.methods) * len(demo.seeds) == 4 * 2 * 3
    phase1 = load_plan(PLANS_DIR / "phase1.yaml")
    assert (phase1.tasks, phase1.methods, phase1.seeds) == (("mrpc", "rte"), ("lora", "full"), (42,))
    phase2a = load_plan(PLANS_DIR / "phase2a.yaml")
    assert phase2a.two_stage and len(phase2a.seeds) == 5 and set(phase2a.tasks) == {"sst2", "mrpc", "rte", "squad_v2"}
    ranks = load_plan(PLANS_DIR / "rank_sweep.yaml")
    assert [a.name for a in ranks.arms] == ["full", *(f"lora_r{2**i}" for i in range(9))]
    assert [a.settings for a in ranks.arms[1:]] == [{"lora.r": 2**i} for i in range(9)] and ranks.reference == "full"
    assert not (PLANS_DIR / "phase2b.yaml").exists()  # phase 2b is the report, not a plan


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_plan_show_cli(path, capsys):
    assert main(["plan", "show", str(path)]) == 0
    out = capsys.readouterr().out
    assert "runs" in out and "FLOPs" in out


def test_plan_show_counts_the_final_runs_copied_from_the_sweep(capsys):
    """study_cpu: 8 task x method pairs, 3 sweep points on seed 42, final seeds 42-44 of which 42 is copied."""
    assert main(["plan", "show", "study_cpu"]) == 0
    out = capsys.readouterr().out
    assert "sweep (seeds [42], validation picks the setting): 24 runs" in out
    assert "seeds [42] copied from the sweep, not trained again; cost of the costliest candidate): 16 runs" in out
    assert "total: 40 runs" in out


MALFORMED = {
    "unknown_key": ("name: x\ntaks: [sst2]\n", "unknown key 'taks'"),
    "unknown_sweep_key": ("name: x\nsweep: {seed: [1]}\n", "unknown key 'sweep.seed'"),
    "missing_name": ("tasks: [rte]\n", "name: required"),
    "empty_grid": ("name: x\ngrid: {}\n", "grid: empty"),
    "empty_axis": ("name: x\ngrid: {lora: {training.learning_rate: []}}\n",
                   "grid.lora: training.learning_rate: expected a non-empty list"),
    "empty_method_grid": ("name: x\ngrid: {lora: {}}\n", "grid.lora: expected a non-empty mapping"),
    "scalar_axis": ("name: x\ngrid: {lora.r: 8}\n", "grid: lora.r: expected a non-empty list"),
    "unknown_task": ("name: x\ntasks: [sst2, sst3]\n", "tasks[1] = 'sst3': allowed:"),
    "negative_lr_grid": ("name: x\ngrid: {lora: {training.learning_rate: [1.0e-4, -1.0e-4]}}\n",
                         "grid.lora: training.learning_rate = -0.0001"),
    "negative_lr_override": ("name: x\noverrides: {training.full_finetune_learning_rate: -1.0e-5}\n",
                             "overrides: training.full_finetune_learning_rate = -1e-05"),
    "unknown_config_key": ("name: x\ngrid: {lora: {training.lerning_rate: [1.0e-4]}}\n",
                           "grid.lora: unknown key 'training.lerning_rate'"),
    "invalid_yaml": ("name: x\ntasks: [sst2\n", "invalid YAML"),
    "not_a_mapping": ("- name\n- x\n", "expected a mapping"),
    "seed_in_grid": ("name: x\ngrid: {training.seed: [1, 2]}\n", "training.seed is set by the plan's `seeds:`"),
    "task_in_overrides": ("name: x\noverrides: {task: rte}\n", "overrides: task is set by the plan's `tasks:`"),
    "ignored_by_full": ("name: x\ngrid: {full: {training.learning_rate: [1.0e-4, 2.0e-4]}}\n",
                        "grid.full: training.learning_rate has no effect on full runs"),
    "flat_lr_both_methods": ("name: x\ngrid: {training.learning_rate: [1.0e-4, 2.0e-4]}\n",
                             "give each method its own grid section"),
    "duplicate_seeds": ("name: x\nseeds: [42, 42]\n", "seeds = [42, 42]: duplicate entries"),
    "negative_seed": ("name: x\nseeds: [-1]\n", "seeds[0] = -1"),
    "duplicate_values": ("name: x\ngrid: {lora.r: [8, 8]}\n", "duplicate values"),
    "method_not_planned": ("name: x\nmethods: [lora]\ngrid: {full: {training.full_finetune_learning_rate: [1]}}\n",
                           "grid.full: method 'full' is not in methods"),
    "missing_config_file": ("name: x\nconfig: nope.yaml\n", "config: nope.yaml: file not found"),
    "tracking_in_grid": ("name: x\ngrid: {tracking.project: [a, b]}\n", "does not change what a run computes"),
    "bad_name": ("name: ../escape\n", "name = '../escape'"),
    "task_overrides_unknown_task": ("name: x\ntask_overrides: {sst3: {lora.r: 4}}\n", "task_overrides.sst3"),
    "task_overrides_task_not_planned": ("name: x\ntasks: [rte]\ntask_overrides: {sst2: {lora.r: 4}}\n",
                                        "task_overrides.sst2: task 'sst2' is not in tasks ['rte']"),
    "task_overrides_swept_key": ("name: x\nmethods: [lora]\ngrid: {lora.r: [4, 8]}\n"
                                 "task_overrides: {rte: {lora.r: 2}}\n",
                                 "task_overrides.rte: lora.r is swept by the plan's grid"),
    "task_overrides_seed": ("name: x\ntask_overrides: {rte: {training.seed: 2}}\n",
                            "task_overrides.rte: training.seed is set by the plan's `seeds:`"),
    "task_overrides_bad_value": ("name: x\ntask_overrides: {rte: {training.max_steps: -5}}\n",
                                 "task_overrides.rte: training.max_steps = -5"),
    "task_overrides_stride": ("name: x\ntask_overrides: {squad_v2: {model.max_length: 64}}\n",
                              "task_overrides.squad_v2"),
    "task_overrides_output_dir": ("name: x\ntask_overrides: {rte: {output_dir: /tmp/elsewhere}}\n",
                                  "task_overrides.rte: output_dir is the plan's"),
    "task_overrides_with_a_grid_point": ("name: x\nmethods: [lora]\ngrid: {lora: {model.max_length: [64, 256]}}\n"
                                         "task_overrides: {squad_v2: {qa.doc_stride: 100}}\n",
                                         "grid.lora with task_overrides.squad_v2"),
    "task_overrides_empty": ("name: x\ntask_overrides: {rte: {}}\n", "task_overrides.rte: expected a non-empty"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_plan_is_one_line_exit_2(case, tmp_path, capsys):
    text, expected = MALFORMED[case]
    path = write_plan(tmp_path, text, name=f"{case}.yaml")
    assert main(["plan", "show", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"tunebench: error: {path}") and expected in err, err


def test_missing_plan_file(tmp_path, capsys):
    assert main(["plan", "show", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml: plan file not found" in capsys.readouterr().err
