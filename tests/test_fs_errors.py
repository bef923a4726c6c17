"""File-system errors the user can cause (a read-only results folder, a full disk, a path below a file) are one
line naming the path and the problem, exit 2, on every verb that writes, and leave nothing half-written; an
OSError that names no path and no file-system problem is a bug and keeps its traceback."""

from __future__ import annotations

import builtins
import errno
import io
import os
import re
import stat
from pathlib import Path

import pytest

from fake_results import classification_predictions, write_fake_run
from tunebench.cli import main
from tunebench.config import load_config
from tunebench.errors import is_user_os_error, os_error_line
from tunebench.results import run_dir

TINY = ["model.name=tiny", "tracking.backend=none", "data.source=builtin", "data.builtin_train_size=32",
        "data.builtin_test_size=16", "data.validation_size=8", "training.max_steps=1", "training.eval_steps=1",
        "training.per_device_train_batch_size=8", "training.eval_train_examples=0", "model.max_length=64",
        "experiment=ro"]

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


@pytest.fixture
def read_only(monkeypatch):
    """read_only(folder): the folder and everything below it as on a read-only disk, `chmod -R a-w`. For
    root, whom permissions do not stop, the calls Python's file functions go through (open for writing,
    mkdir, rename, remove) refuse below the folder as the kernel would refuse another user: PermissionError
    naming the path."""
    folders: list[str] = []
    changed: list[tuple[Path, int]] = []

    def below(path) -> bool:
        if isinstance(path, int):
            return False
        p = os.path.abspath(os.fsdecode(path))
        return any(p == f or p.startswith(f + os.sep) for f in folders)

    def refuse(path):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fsdecode(path))

    def make(folder: Path) -> Path:
        if os.geteuid() != 0:
            for p in [folder, *folder.rglob("*")]:
                changed.append((p, p.stat().st_mode))
                p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
            return folder
        if not folders:
            real_open, real_io_open, real_os_open = builtins.open, io.open, os.open

            def guarded_open(real):
                def opener(file, mode="r", *args, **kwargs):
                    if any(c in mode for c in "wax+") and below(file):
                        refuse(file)
                    return real(file, mode, *args, **kwargs)
                return opener

            def os_open(path, flags, *args, **kwargs):
                if flags & _WRITE_FLAGS and below(path):
                    refuse(path)
                return real_os_open(path, flags, *args, **kwargs)

            monkeypatch.setattr(builtins, "open", guarded_open(real_open))
            monkeypatch.setattr(io, "open", guarded_open(real_io_open))
            monkeypatch.setattr(os, "open", os_open)
            real_mkdir = os.mkdir

            def mkdir(path, *args, **kwargs):     # the kernel says ENOENT (no parent), EEXIST before EACCES
                p = os.path.abspath(os.fsdecode(path))
                if below(p) and os.path.isdir(os.path.dirname(p)) and not os.path.lexists(p):
                    refuse(path)
                return real_mkdir(path, *args, **kwargs)

            monkeypatch.setattr(os, "mkdir", mkdir)
            for name in ("rmdir", "unlink", "remove"):
                real = getattr(os, name)
                monkeypatch.setattr(os, name, lambda path, *a, _real=real, **kw: refuse(path) if below(path)
                                    else _real(path, *a, **kw))
            for name in ("rename", "replace"):
                real = getattr(os, name)
                monkeypatch.setattr(os, name, lambda src, dst, *a, _real=real, **kw: refuse(dst) if below(dst)
                                    or below(src) else _real(src, dst, *a, **kw))
        folders.append(os.path.abspath(folder))
        return folder

    yield make
    for p, mode in reversed(changed):
        p.chmod(mode)


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every entry below folder with its bytes (None for a folder)."""
    return {p.relative_to(folder).as_posix(): None if p.is_dir() else p.read_bytes() for p in folder.rglob("*")}


def one_error_line(capsys, progress: bool = False) -> str:
    """stderr's one line; `progress`: besides `tunebench run`'s own "[i/n] task method seed lr" lines."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not (progress and re.match(r"\[\d+/\d+\] ", line))]
    assert len(lines) == 1 and lines[0].startswith("tunebench: error: "), err
    return lines[0]


# ---------------------------------------------------------------- the read-only stand-in itself


def test_the_read_only_folder_refuses_writes_and_allows_reads(tmp_path, read_only):
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro" / "f.txt").write_text("kept")
    read_only(tmp_path / "ro")
    assert (tmp_path / "ro" / "f.txt").read_text() == "kept"
    for write in (lambda: (tmp_path / "ro" / "new").mkdir(), lambda: (tmp_path / "ro" / "f.txt").write_text("x"),
                  lambda: open(tmp_path / "ro" / ".lock", "a+")):
        with pytest.raises(PermissionError):
            write()
    (tmp_path / "elsewhere.txt").write_text("fine")               # outside it: as usual


# ---------------------------------------------------------------- run


def test_rerunning_a_run_in_a_read_only_results_folder_is_one_line(tmp_path, read_only, capsys):
    """The run's lock is its first write: refused, the run folder is left as it was."""
    results = tmp_path / "results"
    rdir = run_dir(load_config([], [*TINY, f"output_dir={results}"]))
    rdir.mkdir(parents=True)
    (rdir / "metrics.json").write_text('{"status": "running"}')
    (rdir / ".lock").write_text("pid 1 on elsewhere")
    before = snapshot(results)
    read_only(results)
    assert main(["run", *TINY, f"output_dir={results}", "--skip-preflight"]) == 2
    line = one_error_line(capsys, progress=True)
    assert line == f"tunebench: error: cannot write the run folder: {rdir / '.lock'}: permission denied"
    assert snapshot(results) == before


def test_a_new_run_in_a_read_only_results_folder_is_one_line(tmp_path, read_only, capsys):
    results = tmp_path / "results"
    results.mkdir()
    read_only(results)
    assert main(["run", *TINY, f"output_dir={results}", "--skip-preflight"]) == 2
    line = one_error_line(capsys, progress=True)
    assert f"cannot create the run folder {run_dir(load_config([], [*TINY, f'output_dir={results}']))}" in line
    assert line.lower().endswith("permission denied")
    assert snapshot(results) == {}


def test_a_run_below_a_regular_file_is_one_line_naming_the_file(tmp_path, capsys):
    (tmp_path / "results").write_text("not a folder")
    assert main(["run", *TINY, f"output_dir={tmp_path / 'results' / 'deeper'}", "--skip-preflight"]) == 2
    assert one_error_line(capsys, progress=True).endswith(f"{tmp_path / 'results'} is a file, not a folder")
    assert (tmp_path / "results").read_text() == "not a folder"


# ---------------------------------------------------------------- plan run


def test_plan_run_into_a_read_only_results_folder_stops_at_once_in_one_line(tmp_path, read_only, capsys):
    """Not one failed run per planned run: the folder is unwritable for all of them."""
    plan = tmp_path / "plan.yaml"
    plan.write_text("name: p\noverrides: {model.name: tiny, tracking.backend: none, training.max_steps: 1}\n"
                    "tasks: [sst2, rte]\nmethods: [lora]\nseeds: [42]\n")
    results = tmp_path / "results"
    results.mkdir()
    read_only(results)
    assert main(["plan", "run", str(plan), f"output_dir={results}"]) == 2
    line = one_error_line(capsys)
    assert f"cannot create the run folder {results / 'p'}" in line and line.lower().endswith("permission denied")
    assert snapshot(results) == {}


# ---------------------------------------------------------------- report


@pytest.fixture
def results_with_runs(tmp_path) -> Path:
    results = tmp_path / "results"
    for seed in (1, 2):
        for method in ("lora", "full"):
            write_fake_run(results, "sst2", method, seed, test=0.8, validation=0.8,
                           predictions=classification_predictions([1, 0, 1, 0], [True, True, False, True]))
    return results


def test_report_in_a_read_only_results_folder_is_one_line(results_with_runs, read_only, capsys):
    before = snapshot(results_with_runs)
    read_only(results_with_runs)
    assert main(["report", str(results_with_runs)]) == 2
    assert one_error_line(capsys) == f"tunebench: error: {results_with_runs / 'report'}: permission denied"
    assert snapshot(results_with_runs) == before                    # no report folder, nothing else touched


def test_report_on_a_full_disk_is_one_line_and_leaves_no_partial_file(results_with_runs, monkeypatch, capsys):
    def disk_full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))   # as fsync(2) reports it: no file name

    monkeypatch.setattr(os, "fsync", disk_full)
    assert main(["report", str(results_with_runs)]) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"tunebench: error: {results_with_runs / 'report'}") and line.endswith(
        ": no space left on device")
    assert [p for p in (results_with_runs / "report").rglob("*") if p.is_file()] == []   # no temporary file either


# ---------------------------------------------------------------- data import, model convert


def test_data_import_into_a_read_only_cache_is_one_line(tmp_path, read_only, capsys):
    glue = tmp_path / "glue" / "SST-2"
    glue.mkdir(parents=True)
    for name in ("train.tsv", "dev.tsv"):
        (glue / name).write_text("sentence\tlabel\na fine film .\t1\na dull one .\t0\n", encoding="utf-8")
    data = tmp_path / "data"
    data.mkdir()
    read_only(data)
    assert main(["data", "import", "--glue-dir", str(tmp_path / "glue"), f"data.dir={data}"]) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"tunebench: error: {data / 'sst2'}") and line.endswith("permission denied")
    assert snapshot(data) == {}


def test_model_convert_into_a_read_only_folder_is_one_line(tmp_path, read_only, capsys):
    pytest.importorskip("gguf", reason="the gguf extra is not installed")
    from test_model_convert import write_tiny_gguf

    gguf_file = write_tiny_gguf(tmp_path / "tiny.Q4_1.gguf")
    models = tmp_path / "models"
    models.mkdir()
    read_only(models)
    assert main(["model", "convert", "--gguf", str(gguf_file), "--out", str(models / "tiny")]) == 2
    err = capsys.readouterr().err                     # the load's note comes first
    assert "Traceback" not in err
    line = err.rstrip().splitlines()[-1]
    assert line.startswith(f"tunebench: error: {models / 'tiny'}: cannot write the converted model")
    assert snapshot(models) == {}


# ---------------------------------------------------------------- which OSErrors are the user's


def test_os_error_lines_name_the_path_and_the_problem(tmp_path):
    (tmp_path / "results").write_text("")
    below_a_file = NotADirectoryError(errno.ENOTDIR, "Not a directory", str(tmp_path / "results" / "x" / "y"))
    assert os_error_line(below_a_file) == f"{tmp_path / 'results' / 'x' / 'y'}: {tmp_path / 'results'} is a file, " \
        "not a folder"
    assert os_error_line(PermissionError(errno.EACCES, "Permission denied", "r/.lock")) == "r/.lock: permission denied"
    assert os_error_line(OSError(errno.EXDEV, "Invalid cross-device link", "a", None, "b")) == \
        "a -> b: invalid cross-device link"
    assert os_error_line(OSError(errno.ENOSPC, "No space left on device")) == "no space left on device"
    for user in (PermissionError(errno.EACCES, "Permission denied", "x"), OSError(errno.ENOSPC, "No space"),
                 OSError(errno.EROFS, "Read-only file system"), FileNotFoundError(errno.ENOENT, "No such file", "x"),
                 IsADirectoryError(errno.EISDIR, "Is a directory", "x")):
        assert is_user_os_error(user), user
    for bug in (OSError(errno.EINVAL, "Invalid argument"), OSError("no errno"), ConnectionResetError(),
                BrokenPipeError(errno.EPIPE, "Broken pipe"), ValueError("not an OSError")):
        assert not is_user_os_error(bug), bug


def test_an_os_error_without_a_path_is_a_bug_with_its_traceback(monkeypatch, capsys):
    def bug(args):
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr("tunebench.cli.normalize_list_options", bug)
    with pytest.raises(OSError, match="Invalid argument"):
        main(["config", "list"])


def test_debug_shows_the_traceback_of_a_users_os_error(monkeypatch):
    def unwritable(args):
        raise PermissionError(errno.EACCES, "Permission denied", "results/.lock")

    monkeypatch.setattr("tunebench.cli.normalize_list_options", unwritable)
    assert main(["config", "list"]) == 2
    monkeypatch.setenv("TUNEBENCH_DEBUG", "1")
    with pytest.raises(PermissionError):
        main(["config", "list"])
