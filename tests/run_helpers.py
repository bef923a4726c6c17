"""Helpers shared by the tests that interrupt and resume runs."""

from __future__ import annotations


class KillAt:
    """Raise inside training once a log record reaches `step`, as a killed process would stop (after its last
    checkpoint). Wraps a TrainerCallback's on_log: monkeypatch.setattr(Cls, "on_log", KillAt(n)(Cls.on_log))."""

    def __init__(self, step: int):
        self.step = step

    def __call__(self, original):
        def on_log(cb, args, state, control, logs=None, **kw):
            if state.global_step >= self.step:
                raise KeyboardInterrupt("killed")
            return original(cb, args, state, control, logs=logs, **kw)
        return on_log
