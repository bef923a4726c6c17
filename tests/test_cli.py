"""The command line from any folder: shipped configs and plans by name (`config list` / `config copy`, like
torchtune's `tune ls` / `tune cp`), and options, positionals and key=value overrides in any order per verb."""

from __future__ import annotations

import argparse
import fnmatch
import os
import re
import sys
import tomllib
from pathlib import Path

import pytest

from tunebench.cli import build_parser, main
from tunebench.commands._common import SHIPPED_DIR, SHIPPED_KINDS, resolve_shipped, shipped_files
from tunebench.errors import TunebenchError

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """A working folder outside the repository, as for an installed tunebench."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ---------------------------------------------------------------- what ships


def test_shipped_names_cover_every_file_once_and_the_repository_folder_is_the_same():
    files = sorted(p.relative_to(SHIPPED_DIR).as_posix() for p in SHIPPED_DIR.rglob("*.yaml"))
    by_kind = [shipped_files(kind) for kind in SHIPPED_KINDS]
    assert sum(len(names) for names in by_kind) == len(files) == len(shipped_files())  # names unique across kinds
    assert {"base", "study_gpu", "stories260k_cpu"} <= set(shipped_files("config"))
    assert {"demo", "demo_sweep", "phase1", "phase2a"} <= set(shipped_files("plan"))
    assert (REPO_ROOT / "configs").resolve() == SHIPPED_DIR          # configs/ -> src/tunebench/configs


def test_package_data_globs_take_every_shipped_file_into_the_wheel():
    globs = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    package = SHIPPED_DIR.parent
    for path in SHIPPED_DIR.rglob("*"):
        if path.is_file():
            rel = path.relative_to(package).as_posix()
            assert any(fnmatch.fnmatchcase(rel, g) and rel.count("/") == g.count("/") for g in globs["tunebench"]), rel


# ---------------------------------------------------------------- name or path


def test_a_bare_name_is_the_shipped_file_from_any_folder(elsewhere):
    assert Path(resolve_shipped("study_gpu", "config")) == SHIPPED_DIR / "experiments" / "study_gpu.yaml"
    assert Path(resolve_shipped("phase2a", "plan")) == SHIPPED_DIR / "plans" / "phase2a.yaml"


def test_an_existing_file_is_always_taken_as_a_path(elsewhere):
    (elsewhere / "demo").write_text("name: mine\n")
    (elsewhere / "sub").mkdir()
    (elsewhere / "sub" / "x.yaml").write_text("{}\n")
    assert resolve_shipped("demo", "plan") == "demo"
    assert resolve_shipped("sub/x.yaml", "config") == "sub/x.yaml"


def test_an_unknown_name_lists_the_shipped_ones(elsewhere):
    with pytest.raises(TunebenchError, match=r"'phase9'.*not a shipped plan \(shipped: demo, demo_arms, demo_sweep, phase1"):
        resolve_shipped("phase9", "plan")
    with pytest.raises(TunebenchError, match="not a shipped config"):
        resolve_shipped("phase2a", "config")          # a plan's name is not a config's


def test_a_missing_repository_path_names_the_shipped_file(elsewhere):
    with pytest.raises(TunebenchError, match="the shipped one is named phase2a"):
        resolve_shipped("configs/plans/phase2a.yaml", "plan")
    assert resolve_shipped("mine/plan.yaml", "plan") == "mine/plan.yaml"   # the loader says it is missing


def test_an_unknown_name_on_the_command_line_is_one_line_and_exit_2(elsewhere, capsys):
    assert main(["config", "show", "--config", "study_cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "shipped: base, smollm2, smollm2_gguf, stories260k_cpu, study_gpu" in err
    assert main(["plan", "show", "nope"]) == 2
    assert "not a shipped plan" in capsys.readouterr().err


def test_config_show_reads_a_shipped_config_by_name(elsewhere, capsys):
    assert main(["config", "show", "--config", "study_gpu"]) == 0
    assert "princeton-nlp/Sheared-LLaMA-1.3B" in capsys.readouterr().out


def test_demo_takes_the_shipped_plan_from_any_folder(elsewhere):
    args = build_parser().parse_args(["demo"])
    assert args.plan == SHIPPED_DIR / "plans" / "demo.yaml" and args.plan.is_file()
    assert build_parser().parse_args(["demo", "--plan", "demo_sweep"]).plan.name == "demo_sweep.yaml"


def test_plan_run_by_name_from_any_folder(elsewhere, capsys):
    rc = main(["plan", "run", "demo", "--dry-run", f"output_dir={elsewhere / 'results'}", "--stage", "final"])
    assert rc == 0
    out = capsys.readouterr().out
    assert out.startswith("final: 24 runs") and "pending" in out


# ---------------------------------------------------------------- config list / copy


def test_config_list_names_every_shipped_file_with_its_kind(capsys):
    assert main(["config", "list"]) == 0
    out = capsys.readouterr().out
    for name in shipped_files():
        kind = next(k for k in SHIPPED_KINDS if name in shipped_files(k))
        assert any(line.split()[:2] == [name, kind] for line in out.splitlines()), name
    assert "builtin tasks, tiny model, 3 seeds per method" in out          # demo.yaml's description


def test_config_copy_writes_the_shipped_bytes_and_never_overwrites_unasked(elsewhere, capsys):
    source = SHIPPED_DIR / "plans" / "demo.yaml"
    assert main(["config", "copy", "demo"]) == 0                            # default: NAME.yaml here
    assert (elsewhere / "demo.yaml").read_bytes() == source.read_bytes()
    assert main(["config", "copy", "demo", str(elsewhere / "x.yaml")]) == 0
    assert (elsewhere / "x.yaml").read_bytes() == source.read_bytes()
    (elsewhere / "out").mkdir()
    assert main(["config", "copy", "study_gpu", "out"]) == 0                # into a folder
    assert (elsewhere / "out" / "study_gpu.yaml").is_file()
    capsys.readouterr()
    assert main(["config", "copy", "demo", "x.yaml"]) == 2
    assert "already exists (--force overwrites it)" in capsys.readouterr().err
    (elsewhere / "x.yaml").write_text("edited\n")
    assert main(["config", "copy", "--force", "demo", "x.yaml"]) == 0
    assert (elsewhere / "x.yaml").read_bytes() == source.read_bytes()
    assert main(["config", "copy", "nope"]) == 2
    assert "not a shipped config or plan (shipped: base," in capsys.readouterr().err
    assert main(["config", "copy", "demo", "no/such/dir/x.yaml"]) == 2


def test_a_copied_plan_runs_as_a_file(elsewhere, capsys):
    assert main(["config", "copy", "demo", "mine.yaml"]) == 0
    assert main(["plan", "show", "mine.yaml", "training.max_steps=5"]) == 0
    out = capsys.readouterr().out
    assert "plan demo (mine.yaml)" in out
    assert re.search(r"sst2 +lora +\d+ runs x 5 steps of \d+: ", out), out     # max_steps sets the length
    assert main(["plan", "show", "mine.yaml"]) == 0
    assert re.search(r"sst2 +lora +\d+ runs x [\d,]+ examples: ", capsys.readouterr().out)


# ---------------------------------------------------------------- options after positionals, every verb


def leaf_parsers(parser: argparse.ArgumentParser, path=()):
    """(verb path, parser) of every verb that parses arguments itself."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
        return
    for name, sub in subs[0].choices.items():
        yield from leaf_parsers(sub, (*path, name))


VERBS_WITH_OVERRIDES = [(" ".join(path), p) for path, p in leaf_parsers(build_parser())
                        if any(a.dest == "overrides" for a in p._actions)]


def test_every_verb_with_overrides_is_checked():
    verbs = {name for name, _ in VERBS_WITH_OVERRIDES}
    assert {"config show", "run", "sanity", "plan run", "plan show", "plan status", "bench", "data import"} <= verbs


def required_options(parser: argparse.ArgumentParser) -> list[str]:
    """A value for each required option (score's --task, --predictions)."""
    out = []
    for a in parser._actions:
        if a.required and a.option_strings:
            out += [a.option_strings[0], str(next(iter(a.choices))) if a.choices else "x"]
    return out


@pytest.mark.parametrize("verb", [name for name, _ in VERBS_WITH_OVERRIDES])
def test_options_and_overrides_mix_in_any_order(verb, elsewhere):
    words = verb.split()
    plan = ["demo"] if words[0] == "plan" else []
    required = required_options(dict(VERBS_WITH_OVERRIDES)[verb])
    orders = [
        [*words, *plan, "a.b=1", "--config", "base", "c.d=2", *required],
        [*words, "--config", "base", *plan, "a.b=1", *required, "c.d=2"],
        [*words, *required, *plan, "a.b=1", "c.d=2", "--config", "base"],
    ]
    for argv in orders:
        args = build_parser().parse_args(argv)
        assert args.overrides == ["a.b=1", "c.d=2"], argv
        assert args.config == [str(SHIPPED_DIR / "base.yaml")], argv
        if plan:
            assert Path(args.plan) == SHIPPED_DIR / "plans" / "demo.yaml"


def test_plan_run_options_after_the_plan_and_overrides():
    args = build_parser().parse_args(["plan", "run", "phase2a", "--dry-run", "training.num_train_epochs=1",
                                      "--stage", "sweep", "--shard", "2/3", "data.source=local"])
    assert (args.dry_run, args.stage, args.shard) == (True, "sweep", "2/3")
    assert args.overrides == ["training.num_train_epochs=1", "data.source=local"]


def test_list_options_still_hand_overrides_on(capsys):
    from tunebench.commands._common import normalize_list_options

    args = build_parser().parse_args(["run", "training.seed=7", "--tasks", "sst2", "rte", "data.source=builtin",
                                      "--methods", "lora"])
    normalize_list_options(args)
    assert args.tasks == ["sst2", "rte"] and args.methods == ["lora"]
    assert args.overrides == ["training.seed=7", "data.source=builtin"]


def test_report_takes_options_on_either_side_of_its_folder():
    for argv in (["report", "results/x", "--margin", "2"], ["report", "--margin", "2", "results/x"]):
        args = build_parser().parse_args(argv)
        assert args.results_dir is not None and args.margin is not None


@pytest.mark.parametrize("argv", [["config", "list"], ["--help"], ["--version"]])
def test_a_reader_that_stops_reading_is_no_traceback(argv):
    """`tunebench config list | head -1`: the pipe's reader has gone; tunebench exits quietly (141, as a
    shell reports SIGPIPE) instead of printing a BrokenPipeError traceback; argparse's own output (--help,
    --version; argparse drops what it cannot write and exits 0) as well, not "Exception ignored" at exit."""
    import subprocess

    read, write = os.pipe()
    os.close(read)                                   # the reader is gone before anything is written
    try:
        proc = subprocess.run([sys.executable, "-m", "tunebench", *argv], stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write)
    assert proc.returncode == (141 if argv[0] == "config" else 0), proc.stderr
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr and "Exception" not in proc.stderr
    if argv[0] == "config":                          # `2>&1 | head`: stderr is the same gone pipe
        read, write = os.pipe()
        os.close(read)
        try:
            both = subprocess.run([sys.executable, "-m", "tunebench", *argv], stdout=write, stderr=write,
                                  timeout=120)
        finally:
            os.close(write)
        assert both.returncode == 141


def test_a_broken_pipe_that_is_not_stdout_is_a_real_error(monkeypatch):
    """Only a reader of stdout that has gone ends quietly; a broken pipe or socket elsewhere (a tracker, a
    worker) is raised."""
    import tunebench.cli as cli

    def broken(args):
        raise BrokenPipeError(32, "Broken pipe (a socket)")
    monkeypatch.setattr(cli, "normalize_list_options", broken)
    with pytest.raises(BrokenPipeError):
        main(["config", "list"])


def test_demo_runs_its_plan_on_the_backend_it_is_given(elsewhere, monkeypatch):
    """`tunebench demo --backend ray --address A` hands both to the plan executor (make study-smollm2); the
    sanity checks, which run one at a time, get every core whatever the plan gives each run."""
    import tunebench.plan
    import tunebench.sanity
    from tunebench.commands import demo

    seen = {}

    def fake_run_plan(plan, stage, opts):
        seen["stage"], seen["backend"], seen["address"] = stage, opts.backend, opts.address
        return []

    def fake_checks(cfg, tasks, methods):
        seen["threads"] = cfg.training.cpu_threads       # the plan gives each run 1
        return []

    monkeypatch.setattr(tunebench.plan, "run_plan", fake_run_plan)
    monkeypatch.setattr(tunebench.sanity, "run_checks", fake_checks)
    monkeypatch.setattr(demo, "_analysis", lambda *a: 0)
    monkeypatch.setattr("tunebench.report.split.build_reports", lambda *a, **k: (_ for _ in ()).throw(SystemExit(7)))
    with pytest.raises(SystemExit):
        main(["demo", "--plan", "study_smollm2", "--backend", "ray", "--address", "head:6379",
              f"--output-dir={elsewhere / 'results'}"])
    assert seen == {"stage": "all", "backend": "ray", "address": "head:6379", "threads": None}
    assert build_parser().parse_args(["demo"]).backend == "local"
