"""Installing beside a GPU machine's own torch: ranges in pyproject.toml, exact pins only in constraints.txt,
and wandb, the default tracker, a dependency that tracking.backend=none still never imports."""

from __future__ import annotations

import importlib.util
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tunebench.config import load_config
from tunebench.errors import TunebenchError

REPO_ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
DEPENDENCIES = [Requirement(r) for r in PYPROJECT["dependencies"]]
EXTRAS = {extra: [Requirement(r) for r in reqs] for extra, reqs in PYPROJECT["optional-dependencies"].items()}


def constraints() -> dict[str, Version]:
    pins = {}
    for line in (REPO_ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and version, f"constraints.txt: {line!r} is not an exact pin"
            pins[canonicalize_name(name)] = Version(version)
    return pins


# ---------------------------------------------------------------- pyproject ranges, constraints pins


def test_dependencies_are_ranges_and_the_default_tracker_is_one():
    """The bare install runs the default configuration: tracking.backend=wandb needs wandb, so it is a
    dependency (the wandb extra stays, so that `pip install 'tunebench[wandb]'` still works)."""
    from tunebench.config import Config

    pinned = [str(r) for r in DEPENDENCIES if any(s.operator in ("==", "===") for s in r.specifier)]
    assert not pinned, f"exact pins belong in constraints.txt: {pinned}"
    assert Config().tracking.backend == "wandb"
    assert "wandb" in {canonicalize_name(r.name) for r in DEPENDENCIES}
    assert [canonicalize_name(r.name) for r in EXTRAS["wandb"]] == ["wandb"]
    assert "torch-optimi" in {canonicalize_name(r.name) for r in EXTRAS["bf16"]}


def test_ranges_admit_the_torch_and_transformers_cuda_images_ship():
    by_name = {canonicalize_name(r.name): r.specifier for r in DEPENDENCIES}
    for version in ("2.11.0", "2.13.0", "2.14.1"):
        assert by_name["torch"].contains(version), f"torch {version} excluded by {by_name['torch']}"
    for version in ("5.17.0", "5.24.0"):
        assert by_name["transformers"].contains(version)
    assert not by_name["transformers"].contains("6.0.0")


def test_every_named_package_is_pinned_in_constraints_within_its_range():
    pins = constraints()
    for req in DEPENDENCIES + [r for reqs in EXTRAS.values() for r in reqs]:
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name}: no exact pin in constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), f"constraints {name}=={pins[name]} outside {req}"


def test_makefile_installs_every_extra_under_the_constraints():
    makefile = (REPO_ROOT / "Makefile").read_text()
    m = re.search(r'pip install .*-c constraints\.txt -e "\.\[([^\]]*)\]"', makefile)
    assert m, "Makefile: no `pip install -c constraints.txt -e \".[...]\"` line"
    assert set(m.group(1).split(",")) == set(EXTRAS)


# ---------------------------------------------------------------- without wandb


@pytest.fixture
def no_wandb(monkeypatch):
    """wandb as on a machine that never installed it: unimportable, no spec, no distribution."""
    monkeypatch.setitem(sys.modules, "wandb", None)    # `import wandb` raises ImportError
    find_spec, version = importlib.util.find_spec, metadata.version

    def missing_spec(name, *args, **kwargs):
        return None if name == "wandb" or name.startswith("wandb.") else find_spec(name, *args, **kwargs)

    def missing_version(name):
        if canonicalize_name(name) == "wandb":
            raise metadata.PackageNotFoundError(name)
        return version(name)

    monkeypatch.setattr(importlib.util, "find_spec", missing_spec)
    monkeypatch.setattr(metadata, "version", missing_version)


TINY = ["model.name=tiny", "data.source=builtin", "data.builtin_train_size=32", "data.builtin_test_size=16",
        "data.validation_size=8", "training.max_steps=2", "training.eval_steps=2", "training.logging_steps=1",
        "training.per_device_train_batch_size=8", "training.eval_train_examples=8", "model.max_length=64",
        "experiment=install"]


def tiny_cfg(tmp_path, *extra: str):
    return load_config([], [*TINY, f"output_dir={tmp_path}", *extra])


def test_wandb_available_follows_the_installed_package(no_wandb):
    from tunebench.tracking import wandb_available

    assert wandb_available() is False


def test_training_with_tracking_none_runs_without_wandb(tmp_path, no_wandb):
    from tunebench.runner import run_one

    rec = run_one(tiny_cfg(tmp_path, "tracking.backend=none", "method=lora"), preflight=False)
    assert rec["status"] == "ok", rec["reason"]
    assert rec["steps"] == 2 and "accuracy" in rec["test"]
    assert rec["env"]["packages"]["wandb"] is None            # a missing package is recorded as None
    assert rec["env"]["packages"]["torch"] is not None
    assert sys.modules["wandb"] is None                       # nothing replaced the stand-in with a real import


def test_tracking_wandb_without_wandb_is_one_line_naming_the_key(tmp_path, no_wandb):
    from tunebench.tracking import start_tracker

    cfg = tiny_cfg(tmp_path, "tracking.backend=wandb")
    with pytest.raises(TunebenchError) as e:
        start_tracker(cfg, tmp_path / "run", "r1")
    message = str(e.value)
    assert "tracking.backend" in message and "tunebench[wandb]" in message and "\n" not in message
    assert e.value.exit_code == 2
    assert not (tmp_path / "run").exists()                    # failed before touching the run folder


def test_a_run_with_tracking_wandb_without_wandb_fails_with_that_reason(tmp_path, no_wandb):
    from tunebench.runner import run_one

    rec = run_one(tiny_cfg(tmp_path, "tracking.backend=wandb"), preflight=False)
    assert rec["status"] == "failed" and "tracking.backend=wandb needs the wandb package" in rec["reason"]


def test_run_command_refuses_a_missing_tracker_before_writing(tmp_path, no_wandb, capsys):
    from tunebench.cli import main

    code = main(["run", *TINY, f"output_dir={tmp_path}", "tracking.backend=wandb"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "tunebench[wandb]" in err, err
    assert not list(tmp_path.iterdir())


def test_plan_and_demo_refuse_a_missing_tracker_before_any_run(tmp_path, no_wandb, capsys):
    from tunebench.cli import main

    plan = tmp_path / "plan.yaml"
    plan.write_text("name: p\noverrides: {model.name: tiny, tracking.backend: wandb, training.max_steps: 1}\n"
                    "tasks: [sst2]\nmethods: [lora]\nseeds: [42]\n")
    out = tmp_path / "results"
    code = main(["plan", "run", str(plan), f"output_dir={out}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "tunebench[wandb]" in err, err
    code = main(["demo", "--plan", str(plan), "--output-dir", str(out), "--skip-sanity"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "tunebench[wandb]" in err, err
    assert not out.exists()
