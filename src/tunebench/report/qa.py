"""SQuAD v2: answerable and unanswerable questions apart (pure: per-run figures in, figures and words out).

A small model can score a fair overall F1 by answering nothing: an empty prediction scores F1 1 on every
unanswerable question (official script). The overall F1 alone then hides whether the model answers. This
module splits it, per method, into the official script's HasAns F1 (answerable questions) and NoAns F1
(unanswerable ones), each as a mean over seeds with its sd and range, next to the trivial predictor that
always says "no answer" (HasAns F1 0, NoAns F1 100, overall F1 = 100 x the unanswerable share of the test
questions), with the test question counts and the null threshold chosen on validation; and it says in one
sentence per method whether the model answers and whether its overall F1 is above the always-no-answer one.

Abstention (the empty answer), from the predictions: per run, the % of answerable and of unanswerable questions
abstained on, and their gap (unanswerable minus answerable, points) with Newcombe's hybrid score 95% interval
for a difference of two independent proportions; per method, mean and range over seeds and how many seeds'
intervals lie above (below) 0. An abstention no more frequent on unanswerable questions than on answerable ones
carries no information about answerability: it gains NoAns F1 only by giving up answerable questions at the
same rate. And the split of the overall F1 difference LoRA - full into the part from answerable questions
(share answerable x difference of HasAns F1) and from unanswerable ones (share unanswerable x difference of
NoAns F1, which is the % of unanswerable questions whose answer normalizes to empty, i.e. abstention, save the
rare answer made only of articles and punctuation): the official overall F1 is the question-weighted mean of
HasAns F1 and NoAns F1, so the two parts add up to the difference exactly when every run has the same test
questions.

Input per run (`qa_breakdown`): {"seed", "test" (metrics.json's test dict: f1, exact, total, HasAns_* --
absent when no question is answerable --, NoAns_* -- absent when none is unanswerable), "null_threshold"
(metrics.json qa.null_threshold), "has_ans_answered" (% of the answerable test questions given a non-empty
answer, from predictions/test.jsonl: `has_ans_answered`; None when unknown), "abstention" (the question and
abstention counts from predictions/test.jsonl: `abstention_counts`, an `AbstentionCounts` or a mapping of its
fields; None when unknown)}. Missing keys give NaN ("n/a"), never an error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from tunebench.report.stats import summarize
from tunebench.report.tables import finite_or_nan
from tunebench.tasks import qa_task_names

# the task table's extractive-QA task (squad_v2): the breakdown reads the official SQuAD v2 script's HasAns / NoAns
# figures, of one task
if len(qa_task_names()) != 1:
    raise RuntimeError(f"tunebench.report.qa: expected one extractive-QA task in the task table, not {qa_task_names()}")
QA_TASK = qa_task_names()[0]
BASELINE_NAME = "always no answer"
_NAMES = {"lora": "LoRA", "full": "full"}
_METHOD_ORDER = ("lora", "full")
_EQUAL_TOLERANCE = 1e-9   # points: float noise, far below one question on any test set
CONFIDENCE = 0.95         # the abstention gap's interval

# what a method's abstention says about answerability (MethodQa.abstention; None: no predictions)
ABSTENTION_WORDS = ("informative", "uninformative", "reversed", "mixed", "never abstains", "always abstains")

BREAKDOWN_COLUMNS = [
    "row", "n_seeds", "seeds",
    "f1_mean", "f1_sd", "f1_min", "f1_max",
    "has_ans_f1_mean", "has_ans_f1_sd", "has_ans_f1_min", "has_ans_f1_max",
    "no_ans_f1_mean", "no_ans_f1_sd", "no_ans_f1_min", "no_ans_f1_max",
    "has_ans_answered_mean",
    "abstain_has_ans_mean", "abstain_has_ans_min", "abstain_has_ans_max",
    "abstain_no_ans_mean", "abstain_no_ans_min", "abstain_no_ans_max",
    "abstain_gap_mean", "abstain_gap_min", "abstain_gap_max",
    "abstain_gap_seeds_above_0", "abstain_gap_seeds_below_0", "abstention",
    "null_threshold_mean", "null_threshold_sd",
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


NO_SEEDS = OverSeeds(0, math.nan, math.nan, math.nan, math.nan)


@dataclass(frozen=True)
class AbstentionCounts:
    """One run's test questions and how many of them got the empty answer, answerable and unanswerable apart."""

    has_ans: int
    has_ans_abstained: int
    no_ans: int
    no_ans_abstained: int


@dataclass(frozen=True)
class AbstentionRun:
    """One run's abstention (points, 0-100): the rates on answerable and on unanswerable questions (NaN when the
    test set has none of them), the gap unanswerable - answerable and its 95% interval (Newcombe)."""

    counts: AbstentionCounts
    has_ans: float
    no_ans: float
    gap: float
    gap_low: float
    gap_high: float

    @classmethod
    def of(cls, c: AbstentionCounts) -> AbstentionRun:
        has_ans = 100.0 * c.has_ans_abstained / c.has_ans if c.has_ans else math.nan
        no_ans = 100.0 * c.no_ans_abstained / c.no_ans if c.no_ans else math.nan
        if c.has_ans and c.no_ans:
            low, high = newcombe_interval(c.no_ans_abstained, c.no_ans, c.has_ans_abstained, c.has_ans)
            gap, low, high = no_ans - has_ans, 100.0 * low, 100.0 * high
        else:
            gap = low = high = math.nan
        return cls(c, has_ans, no_ans, gap, low, high)

    @property
    def never(self) -> bool:
        return self.counts.has_ans_abstained == 0 and self.counts.no_ans_abstained == 0

    @property
    def always(self) -> bool:
        return (self.counts.has_ans_abstained == self.counts.has_ans
                and self.counts.no_ans_abstained == self.counts.no_ans)


@dataclass(frozen=True)
class F1Split:
    """The overall F1 difference LoRA - full (means over seeds, points) split by question kind: from_has_ans =
    share_has_ans x (HasAns F1 difference), from_no_ans = share_no_ans x (NoAns F1 difference); they add up to
    `difference` (the official overall F1 is the question-weighted mean of the two). A kind without questions
    contributes 0.0 (its F1 difference is NaN)."""

    difference: float
    share_has_ans: float             # fractions of the test questions
    share_no_ans: float
    has_ans_f1: tuple[float, float]  # (LoRA, full) means over seeds
    no_ans_f1: tuple[float, float]   # (LoRA, full): the % of unanswerable questions each abstains on

    @property
    def has_ans_f1_difference(self) -> float:
        return self.has_ans_f1[0] - self.has_ans_f1[1]

    @property
    def no_ans_f1_difference(self) -> float:
        return self.no_ans_f1[0] - self.no_ans_f1[1]

    @property
    def from_has_ans(self) -> float:
        return 0.0 if self.share_has_ans == 0 else self.share_has_ans * self.has_ans_f1_difference

    @property
    def from_no_ans(self) -> float:
        return 0.0 if self.share_no_ans == 0 else self.share_no_ans * self.no_ans_f1_difference


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
    abstention_runs: tuple[AbstentionRun, ...] = ()   # runs with predictions
    abstain_has_ans: OverSeeds = NO_SEEDS   # % of answerable questions given the empty answer
    abstain_no_ans: OverSeeds = NO_SEEDS    # % of unanswerable questions given the empty answer
    abstain_gap: OverSeeds = NO_SEEDS       # unanswerable - answerable (points)
    sentence: str = ""

    @property
    def gap_seeds_above_0(self) -> int:
        """Seeds whose 95% interval of the abstention gap lies above 0: abstention tells the kinds apart."""
        return sum(r.gap_low > 0 for r in self.abstention_runs)

    @property
    def gap_seeds_below_0(self) -> int:
        return sum(r.gap_high < 0 for r in self.abstention_runs)

    @property
    def abstention(self) -> str | None:
        """What the abstention says about answerability, one of ABSTENTION_WORDS: "never abstains" / "always
        abstains" on every seed; else from the gap's interval: above 0 on every seed "informative", below 0 on
        every seed "reversed", on none "uninformative", on some "mixed". None: no predictions, or a test set
        without one of the two kinds."""
        runs = self.abstention_runs
        if not runs:
            return None
        if all(r.never for r in runs):
            return "never abstains"
        if all(r.always for r in runs):
            return "always abstains"
        n = self.abstain_gap.n
        if n == 0:
            return None
        if self.gap_seeds_above_0 == n:
            return "informative"
        if self.gap_seeds_below_0 == n:
            return "reversed"
        if self.gap_seeds_above_0 == 0 and self.gap_seeds_below_0 == 0:
            return "uninformative"
        return "mixed"

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
    split: F1Split | None = None     # LoRA - full by question kind (None: not both methods, or not computable)
    split_sentence: str = ""

    @property
    def sentence(self) -> str:
        return " ".join([*(m.sentence for m in self.methods), *([self.split_sentence] if self.split_sentence
                                                                 else [])])

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
            "abstain_has_ans": {m.method: m.abstain_has_ans.mean for m in self.methods},
            "abstain_no_ans": {m.method: m.abstain_no_ans.mean for m in self.methods},
            "abstain_gap": {m.method: m.abstain_gap.mean for m in self.methods},
            "abstention": {m.method: m.abstention for m in self.methods},
            "difference_from_has_ans": self.split.from_has_ans if self.split else None,
            "difference_from_no_ans": self.split.from_no_ans if self.split else None,
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
            row |= {"has_ans_answered_mean": m.has_ans_answered.mean}
            for name in ("abstain_has_ans", "abstain_no_ans", "abstain_gap"):
                s = getattr(m, name)
                row |= {f"{name}_mean": s.mean, f"{name}_min": s.low, f"{name}_max": s.high}
            if m.abstain_gap.n:
                row |= {"abstain_gap_seeds_above_0": m.gap_seeds_above_0,
                        "abstain_gap_seeds_below_0": m.gap_seeds_below_0}
            row |= {"abstention": m.abstention, "null_threshold_mean": m.null_threshold.mean,
                    "null_threshold_sd": m.null_threshold.sd, "has_ans_total": m.has_ans_total,
                    "no_ans_total": m.no_ans_total, "total": _total(m.has_ans_total, m.no_ans_total),
                    "answers": m.answers, "f1_minus_baseline": m.f1_minus_baseline, "sentence": m.sentence}
            rows.append(row)
        rows.append({"row": BASELINE_NAME, "f1_mean": self.baseline_f1, "has_ans_f1_mean": self.baseline_has_ans_f1,
                     "no_ans_f1_mean": self.baseline_no_ans_f1,
                     "has_ans_answered_mean": 0.0 if self.has_ans_total != 0 else math.nan,
                     "abstain_has_ans_mean": 100.0 if self.has_ans_total != 0 else math.nan,
                     "abstain_no_ans_mean": 100.0 if self.no_ans_total != 0 else math.nan,
                     "abstain_gap_mean": 0.0 if self.has_ans_total != 0 and self.no_ans_total != 0 else math.nan,
                     "abstention": "always abstains",
                     "has_ans_total": self.has_ans_total, "no_ans_total": self.no_ans_total, "total": self.total,
                     "answers": False if self.has_ans_total != 0 else None})
        out = pd.DataFrame(rows, columns=BREAKDOWN_COLUMNS)
        for col in ("n_seeds", "has_ans_total", "no_ans_total", "total", "abstain_gap_seeds_above_0",
                    "abstain_gap_seeds_below_0"):
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
    split = f1_split({m.method: m for m in per_method}, has_ans, no_ans)
    notes = []
    if differ:
        sizes = sorted(f"{a} + {b}" for a, b in counts if a is not None and b is not None)
        notes.append(f"the runs' test sets differ (answerable + unanswerable questions: {', '.join(sizes)}); "
                     "the always-no-answer F1 is the mean over runs")
    return QaBreakdown(
        methods=per_method, has_ans_total=has_ans, no_ans_total=no_ans, total=_total(has_ans, no_ans),
        counts_differ=differ, baseline_f1=baseline_f1,
        baseline_has_ans_f1=math.nan if has_ans == 0 else 0.0,
        baseline_no_ans_f1=math.nan if no_ans == 0 else 100.0, notes=notes,
        split=split, split_sentence=describe_split(split) if split else "")


def _method_qa(method: str, runs: Sequence[Mapping[str, object]]) -> MethodQa:
    tests = [_test(r) for r in runs]
    shares = [s for s in (_no_answer_share(r) for r in runs) if not math.isnan(s)]
    seeds = tuple(sorted(int(s) for r in runs if not math.isnan(s := _number(r.get("seed")))))
    abstention = tuple(AbstentionRun.of(c) for c in (_abstention(r) for r in runs) if c is not None)
    return MethodQa(
        method=method, n_runs=len(runs), seeds=seeds,
        f1=OverSeeds.of([t.get("f1") for t in tests]),
        has_ans_f1=OverSeeds.of([t.get("HasAns_f1") for t in tests]),
        no_ans_f1=OverSeeds.of([t.get("NoAns_f1") for t in tests]),
        has_ans_answered=OverSeeds.of([r.get("has_ans_answered") for r in runs]),
        null_threshold=OverSeeds.of([r.get("null_threshold") for r in runs]),
        has_ans_total=_common_count(runs, "HasAns"), no_ans_total=_common_count(runs, "NoAns"),
        baseline_f1=float(np.mean(shares)) if shares else math.nan,
        seeds_answering=sum(_number(t.get("HasAns_f1")) > 0 for t in tests),
        abstention_runs=abstention,
        abstain_has_ans=OverSeeds.of([a.has_ans for a in abstention]),
        abstain_no_ans=OverSeeds.of([a.no_ans for a in abstention]),
        abstain_gap=OverSeeds.of([a.gap for a in abstention]))


def f1_split(methods: Mapping[str, MethodQa], has_ans: int | None, no_ans: int | None) -> F1Split | None:
    """LoRA - full of the mean overall F1, split by question kind; None without both methods, when the test
    question counts are unknown or differ across runs, or when a figure the split needs is missing on some
    run (then the parts would not add up)."""
    lora, full = methods.get("lora"), methods.get("full")
    if lora is None or full is None or has_ans is None or no_ans is None or has_ans + no_ans == 0:
        return None
    for m in (lora, full):
        if (m.f1.n != m.n_runs or (has_ans and m.has_ans_f1.n != m.n_runs)
                or (no_ans and m.no_ans_f1.n != m.n_runs)):
            return None
    total = has_ans + no_ans
    return F1Split(
        difference=lora.f1.mean - full.f1.mean, share_has_ans=has_ans / total, share_no_ans=no_ans / total,
        has_ans_f1=(lora.has_ans_f1.mean, full.has_ans_f1.mean), no_ans_f1=(lora.no_ans_f1.mean, full.no_ans_f1.mean))


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


def abstention_counts(predictions: pd.DataFrame | None) -> AbstentionCounts | None:
    """Answerable and unanswerable questions in predictions/test.jsonl and how many got the empty answer
    (`prediction` "" or missing, as in `has_ans_answered`); None when unknown (no file, no such columns)."""
    if predictions is None or not {"has_answer", "prediction"} <= set(predictions.columns):
        return None
    kind = predictions["has_answer"].map(lambda v: v if isinstance(v, (bool, np.bool_)) else None)
    known = kind.notna()
    if not known.any():
        return None
    answerable = kind[known].astype(bool)
    abstained = predictions.loc[known, "prediction"].map(lambda p: not (isinstance(p, str) and p != ""))
    return AbstentionCounts(
        has_ans=int(answerable.sum()), has_ans_abstained=int((abstained & answerable).sum()),
        no_ans=int((~answerable).sum()), no_ans_abstained=int((abstained & ~answerable).sum()))


def _abstention(run: Mapping[str, object]) -> AbstentionCounts | None:
    a = run.get("abstention")
    if isinstance(a, AbstentionCounts):
        return a
    if isinstance(a, Mapping):
        values = [_number(a.get(k)) for k in ("has_ans", "has_ans_abstained", "no_ans", "no_ans_abstained")]
        if not any(math.isnan(v) or v < 0 for v in values):
            return AbstentionCounts(*(int(v) for v in values))
    return None


def wilson_interval(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson's score interval for the proportion k / n (fractions; NaN when n is 0)."""
    if n <= 0:
        return math.nan, math.nan
    z = float(scipy_stats.norm.ppf(0.5 + confidence / 2))
    p = k / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_interval(k1: int, n1: int, k2: int, n2: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Newcombe's hybrid score interval (1998, method 10) for p1 - p2 = k1/n1 - k2/n2, two independent
    proportions (fractions; NaN when a group is empty). Good coverage at 0 or all, where the Wald one fails."""
    if n1 <= 0 or n2 <= 0:
        return math.nan, math.nan
    p1, p2 = k1 / n1, k2 / n2
    (l1, u1), (l2, u2) = wilson_interval(k1, n1, confidence), wilson_interval(k2, n2, confidence)
    d = p1 - p2
    return d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)


def runs_from_headline(headline: pd.DataFrame, predictions: Mapping[str, pd.DataFrame] | None = None,
                       task: str = QA_TASK) -> dict[str, list[dict]]:
    """The task's headline runs (the report's tidy rows: test_* columns, qa_null_threshold) as `qa_breakdown`
    input, keyed by arm (the method in the study), each with its answered share from its predictions when
    present."""
    rows = headline[headline["task"] == task] if "task" in headline else headline.iloc[0:0]
    out: dict[str, list[dict]] = {}
    for _, r in rows.iterrows():
        test = {c.removeprefix("test_"): r[c] for c in rows.columns
                if c.startswith("test_") and c != "test_primary" and pd.notna(r[c])}
        run_dir = r.get("run_dir")
        frame = (predictions or {}).get(run_dir) if run_dir else None
        arm = r.get("arm") if "arm" in rows and pd.notna(r.get("arm")) else r["method"]   # tunebench.arms
        out.setdefault(str(arm), []).append({
            "seed": r.get("seed"), "test": test, "null_threshold": r.get("qa_null_threshold"),
            "has_ans_answered": has_ans_answered(frame), "abstention": abstention_counts(frame)})
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
    abstention = describe_abstention(m, has_ans_total, no_ans_total)
    return f"{head}; {describe_overall(m)}." + (f" {abstention}" if abstention else "")


def describe_abstention(m: MethodQa, has_ans_total: int | None = None, no_ans_total: int | None = None) -> str:
    """Whether the method's abstention tells answerable from unanswerable questions, from the predictions
    ("" without them): "It abstains on 39.1% of the answerable and 38.3% of the unanswerable questions: ..."."""
    word = m.abstention
    if not m.abstention_runs:
        return ""
    if word == "never abstains":
        return "It never abstains: it gives an answer to every question, answerable or not."
    if word == "always abstains":
        return f"It abstains on every question, answerable or not, as {BASELINE_NAME} does."
    h, u = m.abstain_has_ans, m.abstain_no_ans
    if word is None:   # a test set with one kind of question only
        part = (f"{score(h.mean)}% of the answerable questions (none is unanswerable)" if h.n else
                f"{score(u.mean)}% of the unanswerable questions (none is answerable)")
        return f"It abstains on {part}."
    rates = f"It abstains on {score(h.mean)}% of the answerable and {score(u.mean)}% of the unanswerable questions"
    g, n = m.abstain_gap, m.abstain_gap.n
    gap = f"unanswerable - answerable: {signed(g.mean)} points"
    if n >= 2 and g.high > g.low:
        gap += f", {signed(g.low)} to {signed(g.high)} over seeds"
    pct = f"{round(100 * CONFIDENCE)}%"
    if word == "informative":
        return f"{rates}: its abstention tells them apart ({gap}; {pct} interval above 0 on {_of(n, n)})."
    if word == "reversed":
        return (f"{rates}: it abstains more often on the answerable ones, the opposite of telling them apart "
                f"({gap}; {pct} interval below 0 on {_of(n, n)}).")
    if word == "mixed":
        return (f"{rates}: its abstention tells them apart on some seeds only ({gap}; {pct} interval above 0 on "
                f"{_of(m.gap_seeds_above_0, n)}, below 0 on {_of(m.gap_seeds_below_0, n)}).")
    text = f"{rates}: its abstention does not tell them apart ({gap}; {pct} interval includes 0 on {_of(n, n)})"
    return f"{text}{_uninformative_consequence(m, has_ans_total, no_ans_total)}."


def signed(x: float | None) -> str:
    """A difference in points for people: +1.2 / -0.8, 0.0 without a sign, 'n/a' when unknown."""
    v = _number(x)
    if math.isnan(v):
        return "n/a"
    return "0.0" if round(v, 1) == 0 else f"{v:+.1f}"


def _of(k: int, n: int) -> str:
    return f"{k} of {n} seeds" if n > 1 else ("the seed" if k else "no seed")


def _uninformative_consequence(m: MethodQa, has_ans_total: int | None, no_ans_total: int | None) -> str:
    """What abstaining more or less does while abstention stays uninformative. Abstaining on a share r of
    every kind of question, F1 - always no answer's = (1 - r) x (s_has x q - s_no x 100), where q is the mean
    F1 of its answers to answerable questions (HasAns F1 / answered share) and s_* the question shares: the
    sign of s_has x q - s_no x 100 says whether abstaining more helps."""
    has_ans = m.has_ans_total if m.has_ans_total is not None else has_ans_total
    no_ans = m.no_ans_total if m.no_ans_total is not None else no_ans_total
    answered = 100.0 - m.abstain_has_ans.mean
    if has_ans is None or no_ans is None or not has_ans + no_ans or m.has_ans_f1.n == 0 or not answered > 0:
        return ""
    q = m.has_ans_f1.mean / (answered / 100.0)       # points of F1 per answered answerable question
    edge = has_ans * q - no_ans * 100.0
    if edge < 0:
        return (f"; while it does not, abstaining more only brings its F1 closer to {BASELINE_NAME}'s, never "
                f"above it (an answer earns F1 {score(q)} on an answerable question on average and costs 100 on "
                "an unanswerable one)")
    if edge > 0:
        return ("; while it does not, abstaining less would raise its F1 (its answers earn more on the "
                "answerable questions than they cost on the unanswerable ones)")
    return ""


def describe_split(s: F1Split) -> str:
    """"LoRA - full = +5.05 points of F1: +5.33 from the unanswerable questions (NoAns F1 38.3 against 27.6:
    LoRA abstains on more of them) and -0.29 from the answerable ones (HasAns F1 3.7 against 4.3); ..." --
    NoAns F1 is the % of unanswerable questions given the empty answer, so its part is abstention alone."""
    def pts(x: float) -> str:
        return "n/a" if math.isnan(x) else f"{x:+.2f}"

    parts = []
    if s.share_no_ans:
        lora, full = s.no_ans_f1
        more = ("as many" if abs(lora - full) <= _EQUAL_TOLERANCE else "more" if lora > full else "fewer")
        parts.append(f"{pts(s.from_no_ans)} from the unanswerable questions (NoAns F1 {score(lora)} against "
                     f"{score(full)}: LoRA abstains on {more} of them)")
    if s.share_has_ans:
        parts.append(f"{pts(s.from_has_ans)} from the answerable ones (HasAns F1 {score(s.has_ans_f1[0])} against "
                     f"{score(s.has_ans_f1[1])})")
    text = f"LoRA - full = {pts(s.difference)} points of F1: {' and '.join(parts)}"
    d, a, b = s.difference, s.from_has_ans, s.from_no_ans
    if s.share_has_ans and s.share_no_ans and abs(d) > _EQUAL_TOLERANCE and not math.isnan(d):
        if b * d > 0 and a * d <= 0:
            text += ("; the whole difference comes from abstention on the unanswerable questions (the answerable "
                     f"ones {'go the other way' if a * d < 0 else 'add nothing'})")
        elif a * d > 0 and b * d <= 0:
            text += ("; the whole difference comes from the answerable questions (abstention on the unanswerable "
                     f"ones {'goes the other way' if b * d < 0 else 'adds nothing'})")
        elif a * d > 0 and b * d > 0:
            text += f"; {100 * b / d:.0f}% of it comes from abstention on the unanswerable questions"
    return text + "."


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
