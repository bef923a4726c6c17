"""Named arms (tunebench.arms) in plans: what defines an arm, its label, the reference, and how a plan with
`arms:` expands, selects and refuses, with one-line errors."""

from __future__ import annotations

import pytest

from plan_helpers import write_plan
from tunebench.arms import Arm, arm_label, default_arms, reference_of, run_arm
from tunebench.errors import TunebenchError
from tunebench.plan.expand import expand_final, expand_grid_final, expand_sweep
from tunebench.plan.select import select_sweep
from tunebench.plan.spec import load_plan

ARMS = """
name: arms
overrides: {model.name: tiny, tracking.backend: none}
tasks: [sst2, rte]
arms:
  full: {method: full}
  lora_r16: {method: lora}
  lora_r64: {method: lora, lora: {r: 64, alpha: 128}}
  dora_r16: {method: lora, lora.use_dora: true}
seeds: [1, 2]
grid:
  lora: {training.learning_rate: [1.0e-4, 2.0e-4]}
  lora_r64: {training.learning_rate: [5.0e-5]}
  full: {training.full_finetune_learning_rate: [1.0e-5]}
sweep: {seeds: [1]}
"""


@pytest.mark.parametrize(("method", "lora", "label"), [
    ("full", None, "full fine-tuning"),
    ("lora", {}, "LoRA r=16"),
    ("lora", {"r": 64, "alpha": 128}, "LoRA r=64"),
    ("lora", {"r": 64}, "LoRA r=64 α=32"),
    ("lora", {"use_dora": True}, "DoRA r=16"),
    ("lora", {"use_rslora": True, "r": 64, "alpha": 16}, "rsLoRA r=64 α=16"),
    ("lora", {"dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}, "LoRA r=16 dropout=0 on q/v"),
])
def test_an_arm_is_named_by_its_defining_settings(method, lora, label):
    assert arm_label(method, lora) == label


def test_the_reference_is_full_fine_tuning_unless_named():
    arms = (Arm("lora_r8", "lora"), Arm("ft", "full"), Arm("lora_r64", "lora"))
    assert reference_of(arms) == "ft" and reference_of(arms, "lora_r64") == "lora_r64"
    assert reference_of(default_arms(["lora", "full"])) == "full"
    with pytest.raises(ValueError, match="is not an arm"):
        reference_of(arms, "dora")
    with pytest.raises(ValueError, match="name the reference arm"):
        reference_of((Arm("a", "lora"), Arm("b", "lora")))


def test_a_runs_arm_is_its_plans_name_else_its_method():
    assert run_arm({"method": "lora", "config": {"method": "lora", "arm": "dora_r16"}}) == "dora_r16"
    assert run_arm({"method": "full", "config": {"method": "full", "arm": None}}) == "full"
    assert run_arm({"method": "lora"}) == "lora"


def test_a_plan_without_arms_has_one_per_method_and_unchanged_runs(tmp_path):
    plan = load_plan(write_plan(tmp_path, "name: x\noverrides: {model.name: tiny}\ntasks: [sst2]\nseeds: [1]\n"))
    assert plan.arms == default_arms(["lora", "full"]) and not plan.named_arms and plan.reference == "full"
    runs = expand_grid_final(plan)
    assert [(r.arm, r.method) for r in runs] == [("lora", "lora"), ("full", "full")]
    assert all(r.cfg.arm is None for r in runs)               # nothing new in the saved config


def test_named_arms_expand_with_their_settings_and_their_own_grids(tmp_path):
    plan = load_plan(write_plan(tmp_path, ARMS))
    assert [a.name for a in plan.arms] == ["full", "lora_r16", "lora_r64", "dora_r16"] and plan.named_arms
    assert plan.methods == ("full", "lora") and plan.reference == "full"
    assert plan.arm("lora_r64").settings == {"lora.r": 64, "lora.alpha": 128}
    assert plan.grid == {"full": {"training.full_finetune_learning_rate": [1.0e-5]},
                         "lora_r16": {"training.learning_rate": [1.0e-4, 2.0e-4]},   # the method's section
                         "lora_r64": {"training.learning_rate": [5.0e-5]},           # its own
                         "dora_r16": {"training.learning_rate": [1.0e-4, 2.0e-4]}}
    sweep = expand_sweep(plan)
    assert len(sweep) == 2 * (1 + 2 + 1 + 2)
    got = {(r.task, r.arm): (r.method, r.cfg.arm, r.cfg.lora.r, r.cfg.lora.alpha, r.cfg.lora.use_dora)
           for r in sweep}
    assert got[("rte", "lora_r64")] == ("lora", "lora_r64", 64, 128, False)
    assert got[("rte", "dora_r16")] == ("lora", "dora_r16", 16, 32, True)
    assert got[("sst2", "full")][:2] == ("full", "full")
    # the arm's name is not part of a run's id: the plain arms' runs are the two-arm plan's
    two = load_plan(write_plan(tmp_path, ARMS.replace("""arms:
  full: {method: full}
  lora_r16: {method: lora}
  lora_r64: {method: lora, lora: {r: 64, alpha: 128}}
  dora_r16: {method: lora, lora.use_dora: true}
""", "").replace("  lora_r64: {training.learning_rate: [5.0e-5]}\n", ""), name="two.yaml"))
    two_ids = {r.run_id for r in expand_sweep(two)}
    assert {r.run_id for r in sweep if r.arm in ("full", "lora_r16")} == two_ids
    # selection and the final stage are per arm
    rows = [{"task": r.task, "method": r.method, "arm": r.arm, "seed": r.seed, "run_id": r.run_id,
             "overrides": r.overrides, "learning_rate": r.cfg.learning_rate, "status": "ok",
             "best_validation": {"value": 0.5 + r.cfg.learning_rate}} for r in sweep]
    selection = select_sweep(rows)
    assert set(selection["sst2"]) == {"full", "lora_r16", "lora_r64", "dora_r16"}
    assert selection["sst2"]["dora_r16"]["learning_rate"] == 2.0e-4
    final = expand_final(plan, selection)
    assert len(final) == 2 * 4 * 2 and {r.arm for r in final} == {a.name for a in plan.arms}
    assert {r.cfg.learning_rate for r in final if r.arm == "lora_r64"} == {5.0e-5}


@pytest.mark.parametrize(("change", "message"), [
    (("tasks: [sst2, rte]\n", "tasks: [sst2, rte]\nmethods: [lora, full]\n"), "methods and arms: give one"),
    (("  dora_r16:", "  Dora:"), "arms.Dora: an arm's name is lowercase letters"),
    (("{method: lora, lora.use_dora: true}", "{method: qlora}"), "arms.dora_r16: expected a mapping with `method:`"),
    (("{method: lora, lora.use_dora: true}", "{method: lora, training.max_steps: 3}"),
     "arms.dora_r16: training.max_steps: an arm is defined by keys its method reads (lora.*)"),
    (("full: {method: full}", "full: {method: full, lora.r: 8}"),
     "arms.full: lora.r: a full arm has no settings of its own"),
    (("{method: lora, lora.use_dora: true}", "{method: lora, lora.r: 0}"), "arms.dora_r16"),
    (("lora_r64: {training.learning_rate: [5.0e-5]}", "lora_r64: {lora.r: [8, 16]}"),
     "grid.lora_r64: lora.r is set by arm lora_r64 (arms.lora_r64): the arm is defined by it"),
    (("seeds: [1, 2]\n", "seeds: [1, 2]\nreference: lora_r8\n"),
     "reference 'lora_r8' is not an arm (full, lora_r16, lora_r64, dora_r16)"),
    (("  dora_r16: {method: lora, lora.use_dora: true}\n",
      "  dora_r16: {method: lora, lora.use_dora: true}\n  plain: {method: lora, lora.r: 16}\n"),
     "arms lora_r16 and plain give the same run"),
    (("full: {method: full}", "ft: {method: full}\n  ft2: {method: full, }"), "name the reference arm (`reference:`)"),
    (("lora_r64: {training", "lora_r65: {training"), "grid.lora_r65: no arm or method named 'lora_r65' (arms: full,"),
])
def test_bad_arms_are_one_line_errors(tmp_path, change, message):
    text = ARMS.replace(*change)
    assert text != ARMS
    with pytest.raises(TunebenchError) as e:
        plan = load_plan(write_plan(tmp_path, text))
        expand_sweep(plan)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_key_an_arm_sets_cannot_come_from_the_command_line_or_a_task(tmp_path):
    path = write_plan(tmp_path, ARMS)
    with pytest.raises(TunebenchError, match=r"override lora.r=8: lora.r is set by arm lora_r64"):
        load_plan(path, overrides=["lora.r=8"])
    with pytest.raises(TunebenchError, match=r"override lora=\{r: 8\}: lora is set by arm lora_r64"):
        load_plan(path, overrides=["lora={r: 8}"])
    per_task = write_plan(tmp_path, ARMS + "task_overrides:\n  rte: {lora.use_dora: true}\n", name="t.yaml")
    with pytest.raises(TunebenchError, match="task_overrides.rte: lora.use_dora is set by arm dora_r16"):
        load_plan(per_task)
    assert load_plan(path, overrides=["lora.dropout=0.0"]).base.lora.dropout == 0.0    # no arm sets it


def test_plan_show_lists_each_arm_its_adapters_cost_and_memory(tmp_path):
    from tunebench.commands.plan import describe_plan

    lines = describe_plan(load_plan(write_plan(tmp_path, ARMS)))
    assert "tasks: sst2, rte; arms: full (reference), lora_r16 (LoRA r=16), lora_r64 (LoRA r=64), dora_r16 " \
           "(DoRA r=16)" in lines
    adapters = {line.split(" (")[0].strip(): int(line.rsplit(": ", 1)[1].split()[0].replace(",", ""))
                for line in lines if "adapter parameters" in line}
    assert adapters["lora_r64"] == 4 * adapters["lora_r16"] and adapters["dora_r16"] > adapters["lora_r16"]
    assert "  lora_r64: training.learning_rate: [5e-05]  -> 1 setting" in lines
    assert any(line.startswith("    rte       dora_r16   2 runs x") for line in lines)
    assert any(line.startswith("  sst2 rte         lora_r64  ") for line in lines)


def test_analysis_names_runs_by_arm_and_family():
    from tunebench.analysis.tables import run_keys

    dora = run_keys({"method": "lora", "lora_r": 16, "config": {"method": "lora", "arm": "dora_r16",
                                                                   "lora": {"r": 16, "use_dora": True}}}, {})
    assert (dora["arm"], dora["family"], dora["setting"]) == ("dora_r16", "DoRA", "DoRA r=16")
    plain = run_keys({"method": "lora", "lora_r": 8, "config": {"method": "lora", "lora": {"r": 8}}}, {})
    assert (plain["arm"], plain["family"], plain["setting"]) == ("lora", "LoRA", "LoRA r=8")
    full = run_keys({"method": "full", "config": {"method": "full", "arm": "full"}}, {})
    assert (full["arm"], full["family"], full["setting"]) == ("full", "full", "full fine-tuning")


def test_the_rank_sweep_as_arms_runs_what_the_rank_grid_ran(tmp_path):
    """Each rank an arm: the same runs (ids) as gridding lora.r under one LoRA arm, now each reported on its own."""
    from plan_helpers import PLANS_DIR

    arms = load_plan(PLANS_DIR / "rank_sweep.yaml")
    grid = load_plan(write_plan(tmp_path, """
        name: rank_sweep
        overrides: {data.source: local, tracking.group: rank_sweep}
        tasks: [mrpc, rte]
        methods: [lora, full]
        seeds: [42, 43, 44]
        grid:
          lora: {lora.r: [1, 2, 4, 8, 16, 32, 64, 128, 256]}
        """))
    assert {r.run_id for r in expand_grid_final(arms)} == {r.run_id for r in expand_grid_final(grid)}
    assert len(expand_grid_final(arms)) == 2 * 10 * 3
