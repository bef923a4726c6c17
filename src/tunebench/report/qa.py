"""SQuAD v2: answerable and unanswerable questions apart (pure: per-run figures in, figures and words out).

A small model can score a fair overall F1 by answering nothing: an empty prediction scores F1 1 on every
unanswerable question (official script). The overall F1 alone then hides whether the model answers. This
module splits it, per method, into the official script's HasAns F1 (answerable questions) and NoAns F1
(unanswerable ones), each as a mean over seeds with its sd and range, next to the trivial predictor that
always says "no answer" (HasAns F1 0, NoAns F1 100, overall F1 = 100 x the unanswerable share of the test
questions), with the test question counts and the null threshold chosen on validation; and it says in one
sentence per method whether the model answers and whether its overall F1 is above the always-no-answer one.

Input per run (`qa_breakdown`): {"seed", "test" (metrics.json's test dict: f1, exact, total, HasAns_* --
absent when no question is answerable --, NoAns_* -- absent when none is unanswerable), "null_threshold"
(metrics.json qa.null_threshold), "has_ans_answered" (% of the answerable test questions given a non-empty
answer, from predictions/test.jsonl: `has_ans_answered`; None when unknown)}. Missing keys give NaN ("n/a"),
never an error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from tunebench.report.stats import summarize
from tunebench.report.tables import finite_or_nan

QA_TASK = "squad_v2"
BASELINE_NAME = "always no answer"
_NAMES = {"lora": "LoRA", "full": "full"}
_METHOD_ORDER = ("lora", "full")
_EQUAL_TOLERANCE = 1e-9   # points: float noise, far below one question on any test set

BREAKDOWN_COLUMNS = [
    "row", "n_seeds", "seeds",
    "f1_mean", "f1_sd", "f1_min", "f1_max",
    "has_ans_f1_mean", "has_ans_f1_sd", "has_ans_f1_min", "has_ans_f1_max",
    "no_ans_f1_mean", "no_ans_f1_sd", "no_ans_f1_min", "no_ans_f1_max",
    "has_ans_answered_mean", "null_threshold_mean", "null_threshold_sd",
    "has_ans_total", "no_ans_total", "total", "answers", "f1_minus_baseline", "sentence",
]


@dataclass(frozen=True)
class OverSeeds:
    """One figure over seeds: how many seeds have it, mean, sample sd (NaN with one seed) and range."""

    n: int
    mean: float
    sd: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float | None]) -> OverSeeds:
        x = [v for v in (_number(v) for v in values) if not math.isnan(v)]
        s = summarize(x)
        return cls(s.n, s.mean, s.sd, min(x) if x else math.nan, max(x) if x else math.nan)


@dataclass(frozen=True)
class MethodQa:
    """One method's figures on the test split (points, 0-100)."""

    method: str
    n_runs: int                      # headline runs (one per seed)
    seeds: tuple[int, ...]
    f1: OverSeeds
    has_ans_f1: OverSeeds
    no_ans_f1: OverSeeds
    has_ans_answered: OverSeeds      # % of answerable questions given a non-empty answer (n = 0: unknown)
    null_threshold: OverSeeds
    has_ans_total: int | None        # None: unknown, or not the same on every seed
    no_ans_total: int | None
    baseline_f1: float               # always no answer on this method's test questions (NaN: counts unknown)
    seeds_answering: int = 0         # seeds with HasAns F1 > 0
    sentence: str = ""

    @property
    def answers(self) -> bool | None:
        """Whether some answerable question gets credit (HasAns F1 > 0 on some seed); None when unknown."""
        if self.has_ans_f1.n == 0:
            return None
        return bool(self.has_ans_f1.high > 0)

    @property
    def f1_minus_baseline(self) -> float:
        return self.f1.mean - self.baseline_f1


@dataclass(frozen=True)
class QaBreakdown:
    """The SQuAD v2 breakdown of one report: per method (LoRA first) and the always-no-answer baseline."""

    methods: list[MethodQa]
    has_ans_total: int | None        # test questions, when every run agrees (None: unknown or they differ)
    no_ans_total: int | None
    total: int | None
    counts_differ: bool              # the runs' test sets differ in size
    baseline_f1: float               # 100 x unanswerable share (mean over runs when counts differ)
    baseline_has_ans_f1: float       # 0.0; NaN when no question is answerable
    baseline_no_ans_f1: float        # 100.0; NaN when no question is unanswerable
    notes: list[str] = field(default_factory=list)

    @property
    def sentence(self) -> str:
        return " ".join(m.sentence for m in self.methods)

    def by_method(self) -> dict[str, MethodQa]:
        return {m.method: m for m in self.methods}

    def verdict_fields(self) -> dict[str, object]:
        """What the SQuAD v2 verdict row gains (verdicts.json): means over seeds per method, in points."""
        return {
            "has_ans_f1": {m.method: m.has_ans_f1.mean for m in self.methods},
            "no_ans_f1": {m.method: m.no_ans_f1.mean for m in self.methods},
            "has_ans_answered": {m.method: m.has_ans_answered.mean for m in self.methods},
            "null_threshold": {m.method: m.null_threshold.mean for m in self.methods},
            "answers": {m.method: m.answers for m in self.methods},
            "has_ans_total": self.has_ans_total, "no_ans_total": self.no_ans_total, "total": self.total,
            "no_answer_baseline": {"name": BASELINE_NAME, "f1": self.baseline_f1,
                                   "has_ans_f1": self.baseline_has_ans_f1, "no_ans_f1": self.baseline_no_ans_f1},
            "qa_sentence": self.sentence,
        }

    def table(self) -> pd.DataFrame:
        """tables/squad_v2_breakdown.csv: one row per method (raw numbers, NaN = n/a) and the baseline's."""
        rows = []
        for m in self.methods:
            row: dict[str, object] = {"row": m.method, "n_seeds": m.n_runs,
                                      "seeds": ",".join(str(s) for s in m.seeds)}
            for name in ("f1", "has_ans_f1", "no_ans_f1"):
                s = getattr(m, name)
                row |= {f"{name}_mean": s.mean, f"{name}_sd": s.sd, f"{name}_min": s.low, f"{name}_max": s.high}
            row |= {"has_ans_answered_mean": m.has_ans_answered.mean, "null_threshold_mean": m.null_threshold.mean,
                    "null_threshold_sd": m.null_threshold.sd, "has_ans_total": m.has_ans_total,
                    "no_ans_total": m.no_ans_total, "total": _total(m.has_ans_total, m.no_ans_total),
                    "answers": m.answers, "f1_minus_baseline": m.f1_minus_baseline, "sentence": m.sentence}
            rows.append(row)
        rows.append({"row": BASELINE_NAME, "f1_mean": self.baseline_f1, "has_ans_f1_mean": self.baseline_has_ans_f1,
                     "no_ans_f1_mean": self.baseline_no_ans_f1,
                     "has_ans_answered_mean": 0.0 if self.has_ans_total != 0 else math.nan,
                     "has_ans_total": self.has_ans_total, "no_ans_total": self.no_ans_total, "total": self.total,
                     "answers": False if self.has_ans_total != 0 else None})
        out = pd.DataFrame(rows, columns=BREAKDOWN_COLUMNS)
        for col in ("n_seeds", "has_ans_total", "no_ans_total", "total"):
            out[col] = pd.to_numeric(out[col], errors="coerce").astype("Int64")
        return out


# ---------------------------------------------------------------- the computation


def qa_breakdown(runs: Mapping[str, Sequence[Mapping[str, object]]]) -> QaBreakdown | None:
    """The breakdown of {method: [run, ...]} (the module docstring says what a run holds); None without runs."""
    methods = [m for m in (*_METHOD_ORDER, *sorted(set(runs) - set(_METHOD_ORDER))) if runs.get(m)]
    if not methods:
        return None
    everything = [r for m in methods for r in runs[m]]
    has_ans, no_ans = _common_count(everything, "HasAns"), _common_count(everything, "NoAns")
    shares = [s for s in (_no_answer_share(r) for r in everything) if not math.isnan(s)]
    counts = {(_count(r, "HasAns"), _count(r, "NoAns")) for r in everything}
    differ = len({c for c in counts if None not in c}) > 1
    baseline_f1 = float(np.mean(shares)) if shares else math.nan
    per_method = [_method_qa(m, runs[m]) for m in methods]
    per_method = [_with_sentence(m, has_ans, no_ans) for m in per_method]
    notes = []
    if differ:
        sizes = sorted(f"{a} + {b}" for a, b in counts if a is not None and b is not None)
        notes.append(f"the runs' test sets differ (answerable + unanswerable questions: {', '.join(sizes)}); "
                     "the always-no-answer F1 is the mean over runs")
    return QaBreakdown(
        methods=per_method, has_ans_total=has_ans, no_ans_total=no_ans, total=_total(has_ans, no_ans),
        counts_differ=differ, baseline_f1=baseline_f1,
        baseline_has_ans_f1=math.nan if has_ans == 0 else 0.0,
        baseline_no_ans_f1=math.nan if no_ans == 0 else 100.0, notes=notes)


def _method_qa(method: str, runs: Sequence[Mapping[str, object]]) -> MethodQa:
    tests = [_test(r) for r in runs]
    shares = [s for s in (_no_answer_share(r) for r in runs) if not math.isnan(s)]
    seeds = tuple(sorted(int(s) for r in runs if not math.isnan(s := _number(r.get("seed")))))
    return MethodQa(
        method=method, n_runs=len(runs), seeds=seeds,
        f1=OverSeeds.of([t.get("f1") for t in tests]),
        has_ans_f1=OverSeeds.of([t.get("HasAns_f1") for t in tests]),
        no_ans_f1=OverSeeds.of([t.get("NoAns_f1") for t in tests]),
        has_ans_answered=OverSeeds.of([r.get("has_ans_answered") for r in runs]),
        null_threshold=OverSeeds.of([r.get("null_threshold") for r in runs]),
        has_ans_total=_common_count(runs, "HasAns"), no_ans_total=_common_count(runs, "NoAns"),
        baseline_f1=float(np.mean(shares)) if shares else math.nan,
        seeds_answering=sum(_number(t.get("HasAns_f1")) > 0 for t in tests))


def _test(run: Mapping[str, object]) -> Mapping[str, object]:
    t = run.get("test")
    return t if isinstance(t, Mapping) else {}


def _count(run: Mapping[str, object], prefix: str) -> int | None:
    """A run's HasAns / NoAns question count: the key, else total minus the other part (the official script
    leaves a part's keys out when it has no question), else None."""
    t = _test(run)
    own = _number(t.get(f"{prefix}_total"))
    if not math.isnan(own):
        return int(own)
    other = _number(t.get(f"{'NoAns' if prefix == 'HasAns' else 'HasAns'}_total"))
    total = _number(t.get("total"))
    if not math.isnan(total) and not math.isnan(other):
        return int(total - other)
    return None


def _common_count(runs: Sequence[Mapping[str, object]], prefix: str) -> int | None:
    counts = {_count(r, prefix) for r in runs}
    return counts.pop() if len(counts) == 1 else None


def _no_answer_share(run: Mapping[str, object]) -> float:
    """Always no answer's F1 on the run's test questions: 100 x the unanswerable share (NaN: counts unknown)."""
    has_ans, no_ans = _count(run, "HasAns"), _count(run, "NoAns")
    if has_ans is None or no_ans is None or has_ans + no_ans == 0:
        return math.nan
    return 100.0 * no_ans / (has_ans + no_ans)


def _total(a: int | None, b: int | None) -> int | None:
    return a + b if a is not None and b is not None else None


def has_ans_answered(predictions: pd.DataFrame | None) -> float | None:
    """% of the answerable questions given a non-empty answer in predictions/test.jsonl (columns has_answer,
    prediction); None when unknown (no file, no such columns, no answerable question)."""
    if predictions is None or not {"has_answer", "prediction"} <= set(predictions.columns):
        return None
    answerable = predictions.loc[predictions["has_answer"].fillna(False).astype(bool), "prediction"]
    if answerable.empty:
        return None
    given = answerable.map(lambda p: isinstance(p, str) and p != "")
    return 100.0 * float(given.mean())


def runs_from_headline(headline: pd.DataFrame, predictions: Mapping[str, pd.DataFrame] | None = None,
                       task: str = QA_TASK) -> dict[str, list[dict]]:
    """The task's headline runs (the report's tidy rows: test_* columns, qa_null_threshold) as `qa_breakdown`
    input, each with its answered share from its predictions when present."""
    rows = headline[headline["task"] == task] if "task" in headline else headline.iloc[0:0]
    out: dict[str, list[dict]] = {}
    for _, r in rows.iterrows():
        test = {c.removeprefix("test_"): r[c] for c in rows.columns
                if c.startswith("test_") and c != "test_primary" and pd.notna(r[c])}
        run_dir = r.get("run_dir")
        out.setdefault(str(r["method"]), []).append({
            "seed": r.get("seed"), "test": test, "null_threshold": r.get("qa_null_threshold"),
            "has_ans_answered": has_ans_answered((predictions or {}).get(run_dir)) if run_dir else None})
    return out


# ---------------------------------------------------------------- words


def _with_sentence(m: MethodQa, has_ans_total: int | None, no_ans_total: int | None) -> MethodQa:
    return replace(m, sentence=describe_method(m, has_ans_total, no_ans_total))


def describe_method(m: MethodQa, has_ans_total: int | None = None, no_ans_total: int | None = None) -> str:
    """"LoRA answers: HasAns F1 4.7 (0.0 for always no answer), NoAns F1 47.1 (100.0); overall F1 25.9 is
    24.2 points below always no answer's 50.1." -- every figure from the numbers, means over seeds."""
    name = _NAMES.get(m.method, m.method)
    h = m.has_ans_f1
    if h.n == 0:
        none = m.has_ans_total == 0 or (m.has_ans_total is None and has_ans_total == 0)
        head = (f"{name}: the test set has no answerable question (HasAns F1 n/a)" if none else
                f"{name}: whether it answers is not known (HasAns F1 n/a: not in metrics.json)")
    elif h.high > 0 and h.low > 0:
        head = f"{name} answers: HasAns F1 {score(h.mean)} (0.0 for {BASELINE_NAME})"
    elif h.high > 0:
        head = (f"{name} answers on {m.seeds_answering} of {h.n} seeds: HasAns F1 {score(h.mean)} on average "
                f"(0.0 for {BASELINE_NAME})")
    else:
        a = m.has_ans_answered
        if a.n == h.n and a.high == 0:
            head = f"{name} predicts no answer for every answerable question (HasAns F1 0.0, as {BASELINE_NAME})"
        elif a.n and a.high > 0:
            head = (f"{name} answers {a.mean:.1f}% of the answerable questions but gets none even partly right "
                    f"(HasAns F1 0.0, as {BASELINE_NAME})")
        else:
            head = f"{name} gets no answerable question even partly right (HasAns F1 0.0, as {BASELINE_NAME})"
    n = m.no_ans_f1
    if n.n:
        head += f", NoAns F1 {score(n.mean)} (100.0 for {BASELINE_NAME})"
    elif m.no_ans_total == 0 or (m.no_ans_total is None and no_ans_total == 0):
        head += ", NoAns F1 n/a (no unanswerable question)"
    return f"{head}; {describe_overall(m)}."


def describe_overall(m: MethodQa) -> str:
    f1, base = m.f1.mean, m.baseline_f1
    if math.isnan(f1):
        return f"overall F1 n/a ({BASELINE_NAME}: {score(base)})"
    if math.isnan(base):
        return f"overall F1 {score(f1)} ({BASELINE_NAME} n/a: the question counts are not in metrics.json)"
    d = f1 - base
    if abs(d) <= _EQUAL_TOLERANCE:
        return f"overall F1 {score(f1)} is the same as {BASELINE_NAME}'s"
    return (f"overall F1 {score(f1)} is {score(abs(d))} points {'above' if d > 0 else 'below'} "
            f"{BASELINE_NAME}'s {score(base)}")


def score(x: float | None, digits: int = 1) -> str:
    """A score in points for people: one decimal; 'n/a' when unknown; a small non-zero value never shows as
    0.0 (that would read as "never answers"): two significant digits below 0.05."""
    v = _number(x)
    if math.isnan(v):
        return "n/a"
    if v != 0 and abs(v) < 0.5 * 10 ** -digits:
        return f"{v:.2g}"
    return f"{v:.{digits}f}"


def over_seeds_text(s: OverSeeds, digits: int = 1) -> str:
    """'4.7 (3.1–6.2)': the mean over seeds and, with 2+ seeds that differ, their range; 'n/a' when unknown."""
    if s.n == 0:
        return "n/a"
    text = score(s.mean, digits)
    if s.n >= 2 and s.high > s.low:
        text += f" ({score(s.low, digits)}–{score(s.high, digits)})"
    return text


def _number(x: object) -> float:
    """The report's finite_or_nan, with a bool (not a figure) as NaN too."""
    return math.nan if isinstance(x, bool) else finite_or_nan(x)
