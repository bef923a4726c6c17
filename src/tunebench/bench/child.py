"""The GPU check's child processes (`training.torch_compile=true` runs in one), which end with the check whatever
ends it. Standard library only.

A child leads its own process group (start_new_session), so that a child past its time budget is killed with
everything it started (TorchInductor's compile workers) and nothing else. That also takes it out of the group
a time limit kills, where it would live on and hold GPU memory for the next try. So:

- the check kills every live child's group when it ends: normally, by an exception, at exit, or on SIGTERM,
  SIGHUP or SIGINT (`ending_children_on_signals` turns those into SystemExit / KeyboardInterrupt, so the
  `finally` blocks run);
- a child asks the kernel for SIGKILL when its parent dies (`die_with_parent`: Linux's PR_SET_PDEATHSIG), which
  covers a parent killed with SIGKILL; TorchInductor's compile workers end themselves when their parent is gone
  (they watch their parent's pid).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

PARENT_ENV = "TUNEBENCH_GPU_CHECK_PARENT"      # the parent's pid, for the child's check that it is still there
PR_SET_PDEATHSIG = 1
_LIVE: dict[int, subprocess.Popen] = {}


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL to the child's process group (it leads it: only its processes), then reap it."""
    with contextlib.suppress(ProcessLookupError, PermissionError, AttributeError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    with contextlib.suppress(ChildProcessError):
        proc.wait()
    _LIVE.pop(proc.pid, None)


def kill_live_children() -> None:
    for proc in list(_LIVE.values()):
        kill_group(proc)


atexit.register(kill_live_children)


def die_with_parent() -> None:
    """In a child: SIGKILL from the kernel when the parent dies (Linux); when the parent is already gone (it died
    before this call), exit now."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    parent = os.environ.get(PARENT_ENV)
    if parent and parent.isdigit() and os.getppid() != int(parent):
        os._exit(1)


def _raise_exit(signum, frame) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def ending_children_on_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP raise SystemExit (SIGINT raises KeyboardInterrupt as usual) while inside, so that the
    `finally` blocks run (the children are killed, the scratch removed); every live child's group is killed on
    the way out. Signal handlers can be set in the main thread only: elsewhere only the latter."""
    saved = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            saved[sig] = signal.signal(sig, _raise_exit)
    try:
        yield
    finally:
        kill_live_children()
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def run_child(argv: list[str], spec: dict, timeout_s: float, work: Path, name: str, env: dict | None = None) -> dict:
    """Run `argv + [SPEC_PATH]` in its own process group with the spec written to SPEC_PATH, its output into
    NAME.log; the child writes its result as JSON to spec["result"]. Killed with its group when it outlasts
    `timeout_s`, and in any case when this call ends otherwise (an exception, SystemExit from a signal)."""
    work.mkdir(parents=True, exist_ok=True)
    spec_path, result_path, log_path = (work / f"{name}.{x}" for x in ("spec.json", "result.json", "log"))
    result_path.unlink(missing_ok=True)
    tmp = spec_path.with_suffix(".tmp")
    tmp.write_text(json.dumps({**spec, "result": str(result_path)}), encoding="utf-8")
    tmp.replace(spec_path)
    env = {**(os.environ if env is None else env), PARENT_ENV: str(os.getpid())}
    t0 = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen([*argv, str(spec_path)], stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        _LIVE[proc.pid] = proc
        try:
            rc = proc.wait(timeout=max(1.0, timeout_s))
        except subprocess.TimeoutExpired:
            kill_group(proc)
            return {"status": "timed_out", "reason": f"killed after {timeout_s:.0f} s (its time budget)",
                    "elapsed_s": time.perf_counter() - t0, "log_tail": tail(log_path)}
        finally:
            if proc.pid in _LIVE:
                kill_group(proc)      # its compile workers, or all of it when this call did not end normally
    elapsed = time.perf_counter() - t0
    if result_path.is_file():
        return {**json.loads(result_path.read_text(encoding="utf-8")), "elapsed_s": elapsed}
    return {"status": "failed", "reason": f"child exited with {rc} and wrote no result", "elapsed_s": elapsed,
            "log_tail": tail(log_path)}


def tail(path: Path, n: int = 15) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()[-n:]
    except OSError:
        return []
