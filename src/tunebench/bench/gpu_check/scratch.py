"""The check's scratch folder under TMPDIR, outside OUT_DIR: made, marked, and removed (with those of
earlier checks that were killed)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from tunebench.system import pid_alive

SCRATCH_PREFIX = "tunebench-gpu-check-"     # + the check's pid: its scratch folder under TMPDIR
MARKER = ".gpu_check"                       # marks a scratch folder this check created (and may therefore clear)


def make_scratch(root: Path | None = None) -> Path:
    """The check's scratch folder, `tunebench-gpu-check-<pid>-*` under TMPDIR (or `root`), marked as the check's;
    the ones of earlier checks whose process is gone (killed with SIGKILL) are removed first."""
    base = Path(root or tempfile.gettempdir())
    for old in base.glob(f"{SCRATCH_PREFIX}*"):
        pid = old.name.removeprefix(SCRATCH_PREFIX).split("-")[0]
        if pid.isdigit() and (old / MARKER).is_file() and not pid_alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-", dir=base))
    (work / MARKER).write_text("made by tunebench bench --gpu-check; removed when it ends\n", encoding="utf-8")
    return work


def remove_scratch(work: Path) -> None:
    if (work / MARKER).is_file():
        shutil.rmtree(work, ignore_errors=True)
