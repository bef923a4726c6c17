"""Config: base.yaml equals the schema defaults, every shipped YAML validates, bad values fail in one line."""

from pathlib import Path

import pytest
import yaml

from tunebench.cli import main
from tunebench.config import (
    Config,
    load_config,
    parse_override,
    read_yaml,
    steps_interval,
    validate_config,
    with_overrides,
)
from tunebench.errors import TunebenchError

ROOT = Path(__file__).resolve().parents[1]


def test_base_yaml_equals_schema_defaults():
    assert validate_config(read_yaml(ROOT / "configs" / "base.yaml")) == Config()


def test_study_defaults():
    c = Config()
    assert c.model.name == "princeton-nlp/Sheared-LLaMA-1.3B" and c.model.max_length == 512
    assert (c.lora.r, c.lora.alpha, c.lora.dropout) == (16, 32, 0.1)
    assert c.lora.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert (c.training.num_train_epochs, c.training.per_device_train_batch_size) == (3, 4)
    assert (c.training.learning_rate, c.training.full_finetune_learning_rate) == (2e-4, 5e-5)
    assert (c.training.eval_steps, c.training.seed, c.training.deterministic) == (0.05, 42, True)
    assert c.tracking.project == "NLP"


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("experiments/*.yaml")))
def test_every_shipped_experiment_config_validates(path):
    cfg = load_config([path])
    assert cfg.experiment != "default"  # each names its experiment


def test_each_method_has_its_own_learning_rate():
    c = Config()
    assert c.learning_rate == 2e-4
    assert with_overrides(c, {"method": "full"}).learning_rate == 5e-5


@pytest.mark.parametrize("text,key,value", [
    ("training.learning_rate=1e-4", "training.learning_rate", 1e-4),
    ("lora.r=8", "lora.r", 8),
    ("lora.target_modules=[q_proj,v_proj]", "lora.target_modules", ["q_proj", "v_proj"]),
    ("model.gguf_file=null", "model.gguf_file", None),
])
def test_parse_override(text, key, value):
    assert parse_override(text) == (key, value)


def test_overrides_apply_after_files(tmp_path):
    f = tmp_path / "exp.yaml"
    f.write_text("training:\n  learning_rate: 3e-4\n  seed: 7\n")
    c = load_config([f], ["training.seed=9"])
    assert c.training.learning_rate == 3e-4 and c.training.seed == 9


@pytest.mark.parametrize("override,needle", [
    ("training.learning_rate=abc", "training.learning_rate = 'abc'"),
    ("lora.r=0", "lora.r = 0"),
    ("method=sgd", "allowed: 'lora' or 'full'"),
    ("nope.key=1", "unknown key 'nope'"),
    ("data.validation_size=2.5", "data.validation_size = 2.5"),
    ("training.eval_steps=1.5", "training.eval_steps = 1.5: must be a fraction in (0, 1) or a whole number of steps"),
    ("training.eval_steps=0", "training.eval_steps = 0"),
    ("noequals", "expected key=value"),
])
def test_bad_override_is_one_line_exit_2(override, needle, capsys):
    assert main(["config", "show", override]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err


def test_bad_file_names_the_file_and_line(tmp_path, capsys):
    f = tmp_path / "bad.yaml"
    f.write_text("training:\n  seed: [1,\n")
    assert main(["config", "show", "--config", str(f)]) == 2
    err = capsys.readouterr().err
    assert str(f) in err and (":2" in err or ":3" in err)
    g = tmp_path / "unknown.yaml"
    g.write_text("training:\n  sede: 1\n")
    with pytest.raises(TunebenchError, match=r"unknown.yaml: unknown key 'training.sede'"):
        load_config([g])


def test_config_show_prints_resolved_yaml(capsys):
    assert main(["config", "show", "lora.r=8"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["lora"]["r"] == 8 and shown["tracking"]["project"] == "NLP"


def test_list_options_may_be_followed_by_overrides(monkeypatch):
    import tunebench.commands.run as run_cmd

    seen = {}

    def fake_expand(cfg, tasks, methods, seeds):
        seen.update(cfg=cfg, tasks=tasks, methods=methods, seeds=seeds)
        return []

    monkeypatch.setattr(run_cmd, "expand_runs", fake_expand)
    monkeypatch.setattr(run_cmd, "print_results_table", lambda records: None)
    assert main(["run", "--tasks", "sst2", "rte", "training.learning_rate=1e-3", "--seeds", "1", "2",
                 "lora.r=4"]) == 0
    assert seen["tasks"] == ["sst2", "rte"] and seen["seeds"] == [1, 2]
    assert seen["cfg"].training.learning_rate == 1e-3 and seen["cfg"].lora.r == 4


@pytest.mark.parametrize("argv,needle", [
    (["run", "--tasks", "cola"], "--tasks 'cola': not one of sst2, mrpc, rte, squad_v2"),
    (["run", "--seeds", "x"], "--seeds 'x': expected int"),
])
def test_bad_list_option_is_one_line_exit_2(argv, needle, capsys):
    assert main(argv) == 2
    assert needle in capsys.readouterr().err


@pytest.mark.parametrize("value,total,interval", [
    (0.05, 45462, 2274), (0.05, 10, 1), (0.25, 10, 3), (100, 45462, 100), (100.0, 7, 100), (0.5, 1, 1),
])
def test_eval_steps_is_a_count_or_a_fraction_of_the_run(value, total, interval):
    """As transformers resolves it: a fraction of max_steps rounded up; a whole number is a step count."""
    steps = with_overrides(Config(), {"training.eval_steps": value}).training.eval_steps
    assert steps_interval(steps, total) == interval
    assert isinstance(steps, int) == (value >= 1)


def test_building_the_cli_imports_no_torch():
    """`tunebench --help` and every one-line config error stay fast: torch is imported only by the verbs that
    need it (the plan's memory estimator and the precision policy are imported lazily)."""
    import subprocess
    import sys

    code = "import sys, tunebench.cli; tunebench.cli.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_qa_doc_stride_at_least_max_length_is_one_line_exit_2(capsys):
    # qa.doc_stride is the overlap between windows: at or above the window it would make every step 1 token
    assert main(["config", "show", "task=squad_v2", "model.max_length=128"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["tunebench: error: override model.max_length=128: qa.doc_stride = 128 must be below "
                   "model.max_length = 128 (the overlap between windows of a long context)"]
    with pytest.raises(TunebenchError, match="qa.doc_stride = 200 must be below model.max_length = 150"):
        with_overrides(Config(), {"task": "squad_v2", "qa.doc_stride": 200, "model.max_length": 150})
    ok = with_overrides(Config(), {"task": "squad_v2", "model.max_length": 128, "qa.doc_stride": 32})
    assert ok.qa.doc_stride == 32
    assert with_overrides(Config(), {"task": "sst2", "model.max_length": 128}).qa.doc_stride == 128  # no windows


def test_rules_across_keys_are_checked_once_all_overrides_are_in():
    """`task=squad_v2 model.max_length=128 qa.doc_stride=32` is valid although its first two steps are not;
    the final config still gets the cross-key rule, naming the last override."""
    cfg = load_config([], ["task=squad_v2", "model.max_length=128", "qa.doc_stride=32"])
    assert (cfg.model.max_length, cfg.qa.doc_stride) == (128, 32)
    with pytest.raises(TunebenchError, match="override model.max_length=128: qa.doc_stride = 128 must be below"):
        load_config([], ["task=squad_v2", "model.max_length=128"])
    with pytest.raises(TunebenchError, match="override training.seed=-1"):   # a key's own rule: at once
        load_config([], ["training.seed=-1", "model.max_length=128"])
