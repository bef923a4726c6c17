"""One honest sentence per task (pure: a TaskComparison and efficiency ratios in, text out).

Rules, in order:
1. "not learned": when either arm's mean test score does not beat the task's trivial baseline on test
   (compare.trivial_baseline) by more than the equivalence margin, LoRA is not compared with full
   fine-tuning at all: matching or beating a model that learned nothing says nothing about the methods.
2. The decision is the seed-level t-test (paired when 2+ seeds are shared, Welch when the arms ran
   different seeds), its p-value Holm-adjusted across the tasks (compare.adjust_across_tasks), at `alpha`.
   When that test is undefined for want of spread across seeds (stats: constant differences), the
   decision falls back to the example-level test on the combined predictions and the sentence says so.
3. Absence of evidence is not evidence of equivalence: "LoRA matches full fine-tuning" is said only when
   the equivalence test (TOST, same seeds and design) against the pre-declared margin succeeds at `alpha`,
   and it is said with the margin; otherwise a non-significant result is "no significant difference" with
   a note that equivalence was not shown. Never "equal". With too few seeds the sentence says no
   significance can be claimed.
Example-level tests are added as a second sentence: they speak to test-set noise only. `verdict_word`
gives the same decision in a word, and `compose_verdict` always agrees with it.
"""

from __future__ import annotations

import math

from tunebench.report.compare import TaskComparison

_NAMES = {"lora": "LoRA", "full": "full fine-tuning"}


def compose_verdict(c: TaskComparison, ratios: dict | None = None, alpha: float = 0.05) -> str:
    """The verdict sentence(s) of one task."""
    if not c.methods_present:
        return f"{c.task}: no completed runs ({c.n_not_ok} failed or unfinished); nothing to compare."
    if c.seeds is None:
        (method,) = c.methods_present
        n = c.lora.n if method == "lora" else c.full.n
        return (f"{c.task}: only {_NAMES[method]} has completed runs ({_count(n, 'seed')}); "
                f"LoRA and full fine-tuning cannot be compared.")
    if c.unlearned_arms:
        return f"{c.task}: {describe_not_learned(c)}{describe_efficiency(ratios or {})}."
    text = f"{c.task}: {describe_seed_result(c, alpha)}{describe_efficiency(ratios or {})}."
    evidence = describe_example_tests(c.example_tests, alpha)
    return f"{text} {evidence}" if evidence else text


def describe_not_learned(c: TaskComparison) -> str:
    """"not learned: full fine-tuning (58.00) does not beat the trivial baseline (...) by more than ±1 point"."""
    b = c.baseline
    assert b is not None
    scores = {"lora": c.lora.mean, "full": c.full.mean}
    arms = c.unlearned_arms
    if len(arms) == 2:
        who = f"neither LoRA ({_num(scores['lora'])}) nor full fine-tuning ({_num(scores['full'])}) beats"
    else:
        (arm,) = arms
        other = "full" if arm == "lora" else "lora"
        who = (f"{_NAMES[arm]} ({_num(scores[arm])}; {_NAMES[other]} {_num(scores[other])}) does not "
               f"beat")
    k = c.seeds
    diff = f"LoRA - full = {_pts(k.mean_diff)} points" if k is not None else ""
    return (f"not learned: {who} the trivial baseline ({b.name}: {_num(b.value)} points of {c.primary_metric} on "
            f"test) by more than {_margin(c.margin)}, so LoRA is not compared with full fine-tuning here ({diff})")


def describe_seed_result(c: TaskComparison, alpha: float) -> str:
    k = c.seeds
    assert k is not None
    diff = f"{c.primary_metric}: LoRA - full = {_pts(k.mean_diff)} points"
    if k.undefined:
        return describe_fallback(c, alpha, diff)
    if k.design == "none" or math.isnan(k.t_p):
        return f"with {_seed_phrase(c)} no significance can be claimed ({diff}{_single_values(c)})"
    ci = f"95% CI [{_num(k.ci_low)}, {_num(k.ci_high)}]"
    tests = (f"paired t-test {_p(k.t_p)}{_holm(c)}, Wilcoxon {_p(k.rank_p)}, d_z = {_num(k.effect_size)}"
             if k.design == "paired" else
             f"no common seeds: Welch t-test {_p(k.t_p)}{_holm(c)}, Mann-Whitney {_p(k.rank_p)}, "
             f"d = {_num(k.effect_size)}")
    e = c.equivalence
    shown = e is not None and e.equivalent
    significant = c.decision_p_adjusted < alpha
    if not significant and shown:
        return (f"LoRA matches full fine-tuning within {_margin(e.margin)} of {c.primary_metric} at alpha = "
                f"{e.alpha:g} with {_seed_phrase(c)} ({_tost(e)}; {diff}, {ci}; {tests})")
    if not significant:
        text = f"no significant difference at alpha = {alpha:g} with {_seed_phrase(c)} ({diff}, {ci}; {tests})"
        if e is not None and not math.isnan(e.p):
            text += f"; equivalence within {_margin(e.margin)} is not shown ({_tost(e)})"
        return text
    better, worse = ("lora", "full") if k.mean_diff > 0 else ("full", "lora")
    text = (f"{_NAMES[better]} is significantly better than {_NAMES[worse]} at alpha = {alpha:g} with "
            f"{_seed_phrase(c)}, by {_num(abs(k.mean_diff))} points of {c.primary_metric} "
            f"({diff}, {ci}; {tests})")
    if shown:
        text += f", a difference within the {_margin(e.margin)} equivalence margin ({_tost(e)})"
    return text


def describe_fallback(c: TaskComparison, alpha: float, diff: str) -> str:
    """The seed-level test is undefined (no spread): say so, and decide on the example-level test."""
    k = c.seeds
    assert k is not None
    head = f"the seed-level test is undefined with {_seed_phrase(c)} ({k.undefined_reason})"
    t = c.fallback_test if c.decided_on == "examples" else None
    if t is None:
        return f"{head}, and there is no example-level test to fall back on: nothing is claimed ({diff})"
    evidence = f"{t['test']} on {_on(t)}{_counts(t)}, {_p(t['p'])}{_holm(c)}"
    if c.decision_p_adjusted < alpha:
        better, worse = ("lora", "full") if c.decision_diff > 0 else ("full", "lora")
        return (f"{head}; on the example-level evidence instead (test-set noise only, not seed variance), "
                f"{_NAMES[better]} is significantly better than {_NAMES[worse]} at alpha = {alpha:g} ({evidence})")
    return (f"{head}; on the example-level evidence instead (test-set noise only, not seed variance) there is no "
            f"significant difference at alpha = {alpha:g} ({evidence}), and without spread across seeds "
            f"equivalence cannot be shown")


def _on(t: dict) -> str:
    comparison = str(t["comparison"])
    return comparison if comparison.startswith("seed ") else f"the {comparison}"


def _holm(c: TaskComparison) -> str:
    """", Holm-adjusted over 4 tasks p = 0.048" (nothing for a family of one)."""
    if c.p_adjusted is None or c.family_size < 2 or math.isnan(c.p_adjusted):
        return ""
    return f", Holm-adjusted over {c.family_size} tasks {_p(c.p_adjusted)}"


def _margin(m: float) -> str:
    return f"±{m:g} point" + ("" if m == 1 else "s")


def _tost(e) -> str:
    level = f"{100 * (1 - 2 * e.alpha):g}%"
    return f"TOST {_p(e.p)}, {level} CI [{_num(e.ci_low)}, {_num(e.ci_high)}]"


def _seed_phrase(c: TaskComparison) -> str:
    k = c.seeds
    assert k is not None
    if k.design == "paired" or (k.design == "none" and c.lora.n == c.full.n == len(c.common_seeds)):
        return _count(len(c.common_seeds), "seed")
    return f"{_count(c.lora.n, 'LoRA seed')} and {_count(c.full.n, 'full seed')} ({len(c.common_seeds)} shared)"


def _single_values(c: TaskComparison) -> str:
    if c.lora.n == 1 and c.full.n == 1:
        return f"; LoRA {_num(c.lora.mean)}, full {_num(c.full.mean)}"
    return ""


def describe_efficiency(r: dict) -> str:
    """"; LoRA trains 0.9% of the parameters and peaks at 38% of full's memory" (parts that are known)."""
    parts = []
    share = r.get("lora_trainable_share")
    if share is not None and not math.isnan(share):
        parts.append(f"trains {_percent(share)} of the parameters")
    mem = r.get("memory_ratio")
    if mem is not None and not math.isnan(mem):
        parts.append(f"peaks at {_percent(mem)} of full's memory")
    elif r.get("memory_kinds") and " vs " in str(r["memory_kinds"]):
        parts.append(f"has peak memory not comparable with full's ({r['memory_kinds']})")
    return f"; LoRA {' and '.join(parts)}" if parts else ""


def describe_example_tests(tests: list[dict], alpha: float) -> str:
    """Summary of the per-example tests: how many seed pairs reject, and the combined test."""
    if not tests:
        return ""
    per_seed = [t for t in tests if str(t["comparison"]).startswith("seed ")]
    combined = [t for t in tests if not str(t["comparison"]).startswith("seed ")]
    name = "McNemar" if tests[0]["test"].startswith("McNemar") else tests[0]["test"]
    parts = []
    if len(per_seed) == 1:
        t = per_seed[0]
        parts.append(f"per-example {name} on seed {t['seeds']}: {_p(t['p'])}{_counts(t)}")
    elif per_seed:
        n_sig = sum(t["p"] < alpha for t in per_seed)
        parts.append(f"per-example {name}: {n_sig} of {len(per_seed)} seed pairs significant at alpha = {alpha:g}")
    for t in combined:
        parts.append(f"{t['comparison']}: {_p(t['p'])}{_counts(t)}")
    return ("Example-level evidence (test-set noise only, not seed variance): " + "; ".join(parts) + ".")


def _counts(t: dict) -> str:
    if t.get("b") is not None and not _isnan(t.get("b")):
        return f" (b = {int(t['b'])} only LoRA right, c = {int(t['c'])} only full right)"
    return f" (LoRA - full = {_pts(t['mean_diff'])} points, 95% CI [{_num(t['ci_low'])}, {_num(t['ci_high'])}])"


def _isnan(x: object) -> bool:
    return isinstance(x, float) and math.isnan(x)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _num(x: float) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x:.2f}"


def _pts(x: float) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x:+.2f}"


def _p(p: float) -> str:
    if p is None or math.isnan(p):
        return "p = n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _percent(fraction: float) -> str:
    pct = 100 * fraction
    if pct >= 10:
        return f"{pct:.0f}%"
    if pct >= 1:
        return f"{pct:.1f}%"
    return f"{pct:.2g}%"


# ---------------------------------------------------------------- the verdict table (one row per task)

VERDICT_WORDS = ("matches", "better", "worse", "inconclusive", "not learned", "no comparison")


def verdict_word(c: TaskComparison, alpha: float = 0.05) -> str:
    """The verdict in a word, by the module's rules: no comparison (an arm has no completed run), not learned
    (an arm does not beat the trivial baseline by more than the margin), better / worse (LoRA against full,
    significant after the Holm adjustment; on the example-level test when the seed-level one is undefined),
    matches (equivalence shown), inconclusive (none of these)."""
    k, e = c.seeds, c.equivalence
    if k is None:
        return "no comparison"
    if c.unlearned_arms:
        return "not learned"
    if c.decision_p_adjusted < alpha:   # False for NaN: no test, nothing claimed
        return "better" if c.decision_diff > 0 else "worse"
    if c.decided_on == "seeds" and e is not None and e.equivalent:
        return "matches"
    return "inconclusive"


def verdict_row(c: TaskComparison, sentence: str, alpha: float = 0.05) -> dict:
    """One task's row of the verdict table (what verdicts.json holds per task and the report's first table
    shows): means in points, LoRA - full with its interval, the word, the seeds and each seed's difference.

    `p` is the seed-level t-test's (NaN when undefined or not run); `p_decision` the raw p of the test the
    decision rests on (`decided_on`: "seeds", "examples" -- the fallback when the seed-level test is
    undefined -- or None) and `p_adjusted` its Holm adjustment across tasks, which the word uses.
    `ci_low` / `ci_high` are NaN when the seed-level test is undefined (`seed_test_undefined_reason`).
    `baseline`: {"name", "value" (points)} of the trivial predictor on test, None when no predictions."""
    k = c.seeds
    nan = math.nan
    lora_by_seed = dict(zip(c.lora_seeds, c.lora_values, strict=True)) if c.lora_values else {}
    full_by_seed = dict(zip(c.full_seeds, c.full_values, strict=True)) if c.full_values else {}
    return {
        "task": c.task, "metric": c.primary_metric, "word": verdict_word(c, alpha), "sentence": sentence,
        "lora": c.lora.mean if c.lora.n else nan, "full": c.full.mean if c.full.n else nan,
        "difference": k.mean_diff if k is not None else nan,
        "ci_low": k.ci_low if k is not None else nan, "ci_high": k.ci_high if k is not None else nan,
        "design": k.design if k is not None else "none",
        "p": k.t_p if k is not None else nan,
        "margin": c.equivalence.margin if c.equivalence is not None else nan,
        "n_seeds": len(c.common_seeds) if k is not None and k.design == "paired" else min(c.lora.n, c.full.n),
        "seed_differences": {s: lora_by_seed[s] - full_by_seed[s] for s in c.common_seeds
                             if s in lora_by_seed and s in full_by_seed},
        "p_adjusted": c.decision_p_adjusted, "p_decision": c.decision_p, "decided_on": c.decided_on,
        "baseline": c.baseline.as_dict() if c.baseline is not None else None,
        "unlearned_arms": c.unlearned_arms,
        "seed_test_undefined_reason": c.seed_test_undefined_reason,
    }


def verdict_methods_text() -> list[str]:
    """Paragraphs for the report's methods section on the verdict's corner cases: the Holm adjustment and
    why equivalence needs none, undefined seed-level tests, the example-level test per metric, and the
    trivial baselines behind "not learned"."""
    return [
        "Several tasks, one family: each task's better / worse decision uses its p-value Holm-adjusted (Holm "
        "1979) over the tasks that have one; both the raw and the adjusted p are shown. Unadjusted, four "
        "tests at alpha = 0.05 would allow up to a 1 - 0.95^4 = 18.5% chance of at least one false 'better' "
        "or 'worse'; adjusted, that chance is at most alpha. The equivalence claims ('matches') are not "
        "adjusted, and need not be: each is an intersection-union test (Berger 1982; Berger and Hsu 1996, "
        "Stat. Sci. 11:283-319). Its null, 'the difference is at or beyond -M or at or beyond +M', is a "
        "union, rejected only when every one-sided test rejects, each at alpha, so the claim errs with "
        "probability at most alpha with no correction; a conclusion that LoRA matches full fine-tuning on "
        "every task at once is the same kind of test over the tasks and is likewise at level alpha.",
        "No spread across seeds: when LoRA - full is the same on every seed (a metric moving in steps of one "
        "test example can do that, e.g. 0.36 points on RTE), the seed-level t-test, its interval and the "
        "TOST are undefined (zero standard deviation: t would be infinite and the interval of zero width); "
        "the report says so and shows no interval, the better / worse decision falls back to the "
        "example-level test on the combined predictions (test-set noise only, in the Holm family like any "
        "other), and 'matches' is not claimed.",
        "Example-level tests are on each task's verdict metric: McNemar only where it is accuracy (SST-2, "
        "RTE); MRPC's F1 (positive class) is not a mean over examples, so it gets a paired bootstrap over "
        "examples that recomputes each arm's F1 on every resample (the seed-averaged F1 for the combined "
        "version); SQuAD v2, a paired bootstrap of per-question F1.",
        "'Not learned': a task where either arm's mean test score does not beat a trivial predictor's score "
        "on test by more than the equivalence margin M gets no better / worse / matches verdict. Trivial "
        "predictors: the majority class (accuracy; the test split's own majority when the train split's "
        "label distribution is not recorded in the run folders, as today -- on test that is the best "
        "constant prediction, so the check is if anything strict), always the positive class (MRPC F1), "
        "always no answer (SQuAD v2 F1 = the share of unanswerable questions, 50.07 on the official dev set).",
    ]
