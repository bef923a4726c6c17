"""The check's log (progress lines to stderr and gpu_check.log) and the device's name."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from tunebench.io import atomic_write_text


class CheckLog:
    """Progress lines with the time since the start: to stderr as they come, and into gpu_check.log (the whole
    text rewritten atomically on each flush)."""

    def __init__(self, path: Path, echo: Callable[[str], None] | None = None):
        self.path, self.echo = path, echo
        self.t0 = time.perf_counter()
        self.lines: list[str] = []

    def __call__(self, message: str) -> None:
        for i, text in enumerate(message.splitlines() or [""]):
            line = f"[{time.perf_counter() - self.t0:7.1f}s] {text}" if i == 0 else f"           {text}"
            self.lines.append(line)
            if self.echo is not None:
                self.echo(line)

    def flush(self) -> None:
        atomic_write_text(self.path, "\n".join(self.lines) + "\n")


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def device_name(device: str) -> str:
    from tunebench.bench.measure import environment

    return environment(device)["device_name"]
