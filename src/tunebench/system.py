"""The process and the machine it runs on: errors as one line, memory, the environment, and run-folder locks.

General helpers with no knowledge of configs, runs or plans, used by the runner, the sanity checks, model
conversion, plans and the benchmark alike (it sits below all of them and imports nothing of tunebench):

- errors: `first_line`, `exception_line` (`Type: first line`), `is_out_of_memory` (CUDA, MPS, CPU allocators);
- memory: `free_memory` (collect, hand CUDA's cached blocks back);
- environment: `environment()` (device, CPU, python, platform, git revision, `PACKAGES`' versions),
  `cpu_name`, `package_version`, `git_revision`;
- processes and locks: `pid_alive`, `run_lock` / `claim_run` (a folder's `.lock`, an flock the kernel releases
  when the process dies, kill -9 included), `live_holder` (who holds it now, read without taking it).
"""

from __future__ import annotations

import contextlib
import gc
import os
import platform
import subprocess
import sys
import threading
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import IO

PACKAGES = ("tunebench", "torch", "transformers", "peft", "datasets", "accelerate", "wandb", "scikit-learn",
            "scipy", "numpy")


# ---------------------------------------------------------------- errors


def first_line(e: BaseException) -> str:
    """The first line of an exception's message ("" when it has none)."""
    return str(e).strip().splitlines()[0] if str(e).strip() else ""


def exception_line(e: BaseException) -> str:
    """`Type: first line of the message`, or the type alone."""
    text = first_line(e)
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


OUT_OF_MEMORY_MESSAGES = ("out of memory", "can't allocate memory", "cublas_status_alloc_failed")   # lower case


def is_out_of_memory(e: BaseException) -> bool:
    """torch.OutOfMemoryError, or any error (or its cause) whose message says out of memory (CUDA, MPS, a CPU
    allocator, cuBLAS failing to allocate its workspace)."""
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        text = str(e).lower()
        if type(e).__name__ == "OutOfMemoryError" or any(m in text for m in OUT_OF_MEMORY_MESSAGES):
            return True
        e = e.__cause__ or e.__context__
    return False


# ---------------------------------------------------------------- memory


def free_memory() -> None:
    """Collect the failed attempt's model, optimizer and activations, and hand CUDA's cached blocks back."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---------------------------------------------------------------- environment


def environment() -> dict:
    import torch

    cpu = f"cpu ({platform.processor() or platform.machine()})"
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else cpu
    return {
        "device": device,
        "cpu": cpu_name(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_revision": git_revision(),
        "argv": sys.argv[1:],
        "packages": {p: package_version(p) for p in PACKAGES},
    }


def cpu_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model and the vector instructions torch's kernels use on it ("AMD EPYC (AVX2)"): CPU training
    is deterministic for one CPU type, but kernels of another width (AVX2 against AVX512) sum in another order,
    so numbers compare bit for bit only between runs with the same value here."""
    import torch

    model = platform.processor() or platform.machine()
    try:
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                model = value.strip()
                break
    except OSError:
        pass
    return f"{model} ({torch.backends.cpu.get_cpu_capability()})"


def package_version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def git_revision() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


# ---------------------------------------------------------------- processes and locks


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid lives on this machine (ours or another user's): signal 0."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:               # another user's live process
        return True
    return True


_claimed = threading.local()     # .folders: the run folders that claim_run holds on this thread


@contextlib.contextmanager
def run_lock(rdir: Path) -> Iterator[str | None]:
    """Hold the run folder's lock: yields None when taken, or who holds it ("pid N on HOST") when another
    process does. Inside claim_run on the same folder and thread, the claim's lock is this one: None, and
    nothing more is taken. Without fcntl (Windows) nothing is locked."""
    try:
        import fcntl
    except ImportError:
        yield None
        return
    if os.path.realpath(rdir) in getattr(_claimed, "folders", ()):
        yield None
        return
    with open(rdir / ".lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            yield f.read().strip() or "unknown process"
            return
        _write_holder(f)
        try:
            yield None
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def claim_run(rdir: Path) -> Iterator[str | None]:
    """run_lock, shared with what runs inside it on this thread: run_one (or any run_lock) on the same folder
    there runs under this lock instead of finding the run held. A plan claims a run this way to read its
    state again under the lock before it calls the run function (tunebench.plan.run_fn). A plain run_lock is
    not shared: a second run_lock on its folder, even on its own thread, finds the run held."""
    folders = _claimed.__dict__.setdefault("folders", set())
    key = os.path.realpath(rdir)
    if key in folders:                   # claimed already, further out on this thread
        yield None
        return
    with run_lock(rdir) as holder:
        if holder is not None:
            yield holder
            return
        folders.add(key)
        try:
            yield None
        finally:
            folders.discard(key)


PROC_LOCKS = Path("/proc/locks")     # Linux: every lock held on this machine


def live_holder(rdir: Path) -> str | None:
    """Who holds the run folder's lock ("pid N on HOST") when a process on this machine holds it now; None
    otherwise. Found without taking the lock (taking it, even for an instant, could turn away a run starting
    then): Linux lists the flocks of this PID namespace in /proc/locks, by inode; elsewhere the pid the lock
    file names must be a live process. A holder on another machine or in another container: None."""
    lock = rdir / ".lock"
    try:
        holder = lock.read_text(encoding="utf-8").strip()
        st = lock.stat()
    except OSError:
        return None
    try:
        table = PROC_LOCKS.read_text(encoding="ascii")
    except OSError:
        table = None
    pid, _, host = holder.removeprefix("pid ").partition(" on ")
    if table is not None:
        # by inode and by the pid the lock file names (the process that took the flock wrote it): the table's
        # device is the filesystem's superblock, which stat() does not always give (btrfs subvolumes, overlayfs),
        # so an inode alone could be another filesystem's flocked file. A holder text that names no pid of this
        # machine is matched by inode alone. Not seen: a flock only a forked child keeps after its taker exited.
        inode = f":{st.st_ino}"
        own = host == platform.node() and pid.isdigit()
        held = any(len(f) > 5 and f[1] == "FLOCK" and f[5].endswith(inode) and (not own or f[4] == pid)
                   for f in map(str.split, table.splitlines()))
        return (holder or "unknown process") if held else None
    if host != platform.node() or not pid.isdigit():
        return None
    return holder if pid_alive(int(pid)) else None


def _write_holder(f: IO[str]) -> None:
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()} on {platform.node()}")
    f.flush()
