"""Progress of a stage: a live table on a terminal (rich), one plain line per event otherwise.

`Board` is the state (pure: it takes a clock); `LineProgress` and `LiveProgress` render it. The time left is
the throughput so far (estimated cost of the runs finished in this launch / elapsed) applied to the
estimated cost of the runs left, so a SQuAD run counts for more than an RTE run. A run that another process
holds is `busy`: left to it, neither done nor failed here (and shown only when there is one).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Protocol

PENDING, RUNNING, DONE, FAILED, BUSY = "pending", "running", "done", "failed", "busy"
STATES = (PENDING, RUNNING, DONE, FAILED, BUSY)


@dataclass
class RunRow:
    run_id: str
    group: str                  # "task/method"
    weight: float               # estimated cost (FLOPs or tokens)
    state: str = PENDING
    started: float | None = None
    ended: float | None = None
    earlier: bool = False       # finished before this launch (skipped), or by another process meanwhile
    note: str = ""


class Board:
    def __init__(self, title: str, rows: list[RunRow], clock: Callable[[], float] = time.monotonic):
        self.title = title
        self.rows = {r.run_id: r for r in rows}
        self.clock = clock
        self.t0 = clock()

    def start(self, run_id: str, note: str = "") -> None:
        row = self.rows[run_id]
        if row.state != RUNNING:
            row.state, row.started, row.note = RUNNING, self.clock(), note

    def finish(self, run_id: str, ok: bool, note: str = "", elsewhere: bool = False) -> RunRow:
        """`elsewhere`: another process finished it (no work of this launch: it weighs nothing in the ETA)."""
        row = self.rows[run_id]
        row.state, row.ended, row.note = (DONE if ok else FAILED), self.clock(), note
        row.started = row.started if row.started is not None else row.ended
        row.earlier = row.earlier or elsewhere
        return row

    def leave(self, run_id: str, note: str = "") -> RunRow:
        """Another process holds the run: busy, left to it."""
        row = self.rows[run_id]
        row.state, row.ended, row.note = BUSY, self.clock(), note
        row.started = row.started if row.started is not None else row.ended
        return row

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATES, 0)
        for r in self.rows.values():
            out[r.state] += 1
        return out

    def elapsed_s(self) -> float:
        return self.clock() - self.t0

    def eta_s(self) -> float | None:
        done = [r.weight for r in self.rows.values() if r.state in (DONE, FAILED) and not r.earlier]
        left = [r.weight for r in self.rows.values() if r.state in (PENDING, RUNNING)]
        return estimate_remaining_s(sum(done), self.elapsed_s(), sum(left))

    def running(self) -> list[RunRow]:
        return [r for r in self.rows.values() if r.state == RUNNING]

    def by_group(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for r in self.rows.values():
            out.setdefault(r.group, dict.fromkeys(STATES, 0))[r.state] += 1
        return out


def estimate_remaining_s(done_weight: float, elapsed_s: float, left_weight: float) -> float | None:
    """Throughput so far applied to the work left; None before anything finished."""
    if left_weight <= 0:
        return 0.0
    if done_weight <= 0 or elapsed_s <= 0:
        return None
    return left_weight * elapsed_s / done_weight


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def summary_line(board: Board) -> str:
    c = board.counts()
    busy = f"busy {c[BUSY]}, " if c[BUSY] else ""
    return (f"done {c[DONE]}, failed {c[FAILED]}, {busy}running {c[RUNNING]}, pending {c[PENDING]} | "
            f"{format_duration(board.elapsed_s())} elapsed, ~{format_duration(board.eta_s())} left")


class Progress(Protocol):
    board: Board

    def __enter__(self) -> Progress: ...
    def __exit__(self, *exc: object) -> None: ...
    def started(self, run_id: str, note: str = "") -> None: ...
    def finished(self, run_id: str, ok: bool, note: str = "", elsewhere: bool = False) -> None: ...
    def busy(self, run_id: str, note: str = "") -> None: ...


class LineProgress:
    """One line per start and finish: for logs, CI and `nohup` on the study's machines."""

    def __init__(self, board: Board, stream: IO[str] | None = None):
        self.board = board
        self.stream = stream or sys.stdout

    def __enter__(self) -> LineProgress:
        c = self.board.counts()
        todo = c[PENDING] + c[RUNNING]
        self._print(f"[{self.board.title}] {len(self.board.rows)} runs: {todo} to run, "
                    f"{c[DONE]} already done, {c[FAILED]} failed and kept")
        return self

    def __exit__(self, *exc: object) -> None:
        self._print(f"[{self.board.title}] finished: {summary_line(self.board)}")

    def started(self, run_id: str, note: str = "") -> None:
        """One line per run, however often a backend that polls (Ray) reports it started."""
        if self.board.rows[run_id].state == RUNNING:
            return
        self.board.start(run_id, note)
        self._print(f"[{self.board.title}] start  {run_id}" + (f" ({note})" if note else ""))

    def finished(self, run_id: str, ok: bool, note: str = "", elsewhere: bool = False) -> None:
        row = self.board.finish(run_id, ok, note, elsewhere)
        self._line("ok    " if ok else "FAILED", row)

    def busy(self, run_id: str, note: str = "") -> None:
        self._line("busy  ", self.board.leave(run_id, note))

    def _line(self, verdict: str, row: RunRow) -> None:
        took = format_duration((row.ended or 0) - (row.started or 0))
        self._print(f"[{self.board.title}] {verdict} {row.run_id} {took}" + (f" ({row.note})" if row.note else "")
                    + f" | {summary_line(self.board)}")

    def _print(self, line: str) -> None:
        print(line, file=self.stream, flush=True)


class LiveProgress:
    """A rich table redrawn in place: runs per task/method and state, what is running and for how long."""

    def __init__(self, board: Board, stream: IO[str] | None = None):
        from rich.console import Console
        from rich.live import Live

        self.board = board
        self.console = Console(file=stream or sys.stdout)
        self.live = Live(get_renderable=self.render, console=self.console, refresh_per_second=1)

    def __enter__(self) -> LiveProgress:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.__exit__(*exc)

    def started(self, run_id: str, note: str = "") -> None:
        self.board.start(run_id, note)
        self.live.refresh()

    def finished(self, run_id: str, ok: bool, note: str = "", elsewhere: bool = False) -> None:
        self.board.finish(run_id, ok, note, elsewhere)
        if not ok:
            from rich.markup import escape

            self.console.print(f"[red]failed[/red] {run_id}: {escape(note)}")   # a reason may hold [brackets]
        self.live.refresh()

    def busy(self, run_id: str, note: str = "") -> None:
        self.board.leave(run_id, note)
        self.live.refresh()

    def render(self):
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        table = Table(title=f"{self.board.title}: {summary_line(self.board)}", title_justify="left")
        for col in ("task/method", *STATES):
            table.add_column(col, justify="left" if col == "task/method" else "right")
        for group, counts in self.board.by_group().items():
            table.add_row(group, *(str(counts[s]) for s in STATES))
        now = self.board.clock()
        lines = [Text(f"  running {r.run_id}  {format_duration(now - (r.started or now))}"
                      + (f"  ({r.note})" if r.note else "")) for r in self.board.running()]   # plain: no markup
        return Group(table, *lines)


def make_progress(board: Board, stream: IO[str] | None = None, live: bool | None = None) -> Progress:
    """Live table when the stream is a terminal, plain lines otherwise."""
    stream = stream or sys.stdout
    if live is None:
        live = bool(getattr(stream, "isatty", lambda: False)())
    return LiveProgress(board, stream) if live else LineProgress(board, stream)
