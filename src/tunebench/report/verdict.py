"""One honest sentence per task (pure: a TaskComparison and efficiency ratios in, text out).

Rules, in order (compare.py's module docstring has the statistics):
1. Learned first: each arm is tested against the best constant predictor on test (learned.py). When an arm is
   not shown to beat it, LoRA is not compared with full fine-tuning: "not learned" (neither arm, or one not
   shown and the other unknown) or "only LoRA learned" / "only full learned". A non-significant test on a few
   seeds is absence of evidence, and the sentence says so. Learning that could not be checked is said too.
2. One Holm family over the compared tasks holds both hypotheses of each: the difference (t-test over seeds;
   better / worse) and equivalence within the margin (TOST; matches). "matches" when equivalence is shown,
   also when a small difference inside the margin is itself significant (the sentence states it); else
   "better" / "worse" when the difference is significant; else "inconclusive".
3. A seed-level verdict needs 3 seeds with spread. Otherwise the decision rests on the example-level tests
   (test-set noise only), and the sentence says so.
"""

from __future__ import annotations

import math

from tunebench.report.compare import TaskComparison
from tunebench.report.learned import SHOWN


def compose_verdict(c: TaskComparison, ratios: dict | None = None, alpha: float = 0.05) -> str:
    """The verdict sentence(s) of one task."""
    if not c.methods_present:
        return f"{c.task}: no completed runs ({c.n_not_ok} failed or unfinished); nothing to compare."
    if c.seeds is None:
        (method,) = c.methods_present
        n = c.lora.n if method == "lora" else c.full.n
        return (f"{c.task}: only {c.name(method)} has completed runs ({_count(n, 'seed')}); "
                f"{c.name('lora')} and {c.name('full')} cannot be compared.")
    if c.unlearned_arms:
        return f"{c.task}: {describe_not_learned(c, alpha)}{describe_efficiency(ratios or {}, c)}."
    text = f"{c.task}: {describe_seed_result(c, alpha)}{describe_efficiency(ratios or {}, c)}."
    unknown = describe_unknown_learning(c)
    if unknown:
        text += f" {unknown}"
    evidence = describe_example_tests(c.example_tests, alpha, c)
    return f"{text} {evidence}" if evidence else text


def _baseline_text(c: TaskComparison) -> str:
    b = c.baseline
    assert b is not None
    return f"the best constant predictor ({b.name}: {_num(b.value)} points of {c.primary_metric} on test)"


def _learned_evidence(c: TaskComparison, arm: str) -> str:
    """"LoRA (54.52; one-sided t-test over 3 seeds p = 0.230, Holm-adjusted over 8 arms p = 0.920)"."""
    t = c.learned[arm]
    score = c.lora.mean if arm == "lora" else c.full.mean
    if t.state not in (SHOWN, "not shown"):
        return f"{c.name(arm)} ({_num(score)}; not checked: {t.reason})"
    holm = (f", Holm-adjusted over {t.family_size} arms {_p(t.p_adjusted)}"
            if t.p_adjusted is not None and t.family_size > 1 else "")
    return f"{c.name(arm)} ({_num(score)}; {t.test} {_p(t.p)}{holm})"


def describe_not_learned(c: TaskComparison, alpha: float = 0.05) -> str:
    """Why the arm (LoRA) is not compared with the reference (full fine-tuning) on this task: an arm is not shown
    to have learned."""
    base = _baseline_text(c)
    by = f" by more than {c.learn_margin:g} points" if c.learn_margin > 0 else ""
    shown, not_shown = c.learned_arms, c.unlearned_arms
    if len(not_shown) == 2:
        head = (f"not learned: neither {_learned_evidence(c, 'lora')} nor {_learned_evidence(c, 'full')} is "
                f"shown to beat {base}{by} at alpha = {alpha:g}")
    elif shown:
        (arm,), (other,) = shown, not_shown
        head = (f"only {c.name(arm)} learned: {_learned_evidence(c, arm)} beats {base}{by} significantly at "
                f"alpha = {alpha:g}; {_learned_evidence(c, other)} is not shown to")
    else:
        (arm,) = not_shown
        other = "full" if arm == "lora" else "lora"
        head = (f"not learned: {_learned_evidence(c, arm)} is not shown to beat {base}{by} at alpha = {alpha:g}, "
                f"and {_learned_evidence(c, other)} could not be checked")
    levels = {c.learned[a].level for a in not_shown}
    few = {c.learned[a].n for a in not_shown if c.learned[a].level == "seeds"}
    seeds = f" with {_count(max(few), 'seed')}" if few else ""
    absence = (f" (a test that does not reject{seeds} is absence of evidence that it learned, not evidence that it "
               f"did not{'; on the test examples: test-set noise only' if 'examples' in levels else ''})")
    k = c.seeds
    diff = f"{_minus(c)} = {_pts(k.mean_diff)} points" if k is not None else ""
    return f"{head}{absence}, so {c.name('lora')} is not compared with {c.name('full')} here ({diff})"


def describe_unknown_learning(c: TaskComparison) -> str:
    """"Whether either arm learned the task could not be checked (...)..." ("" when it was checked)."""
    arms = c.unknown_learning
    if not arms:
        return ""
    reasons = sorted({c.learned[a].reason for a in arms if a in c.learned and c.learned[a].reason})
    who = "either arm" if len(arms) == 2 else c.name(arms[0])
    why = f" ({'; '.join(reasons)})" if reasons else ""
    return (f"Whether {who} learned the task could not be checked{why}: two arms that learned nothing would match "
            f"each other, so 'matches' is not said.")


def describe_seed_result(c: TaskComparison, alpha: float) -> str:
    k = c.seeds
    assert k is not None
    diff = f"{c.primary_metric}: {_minus(c)} = {_pts(k.mean_diff)} points"
    if c.seed_level_reason is not None:
        return describe_fallback(c, alpha, diff)
    if math.isnan(k.t_p):
        return f"with {_seed_phrase(c)} no significance can be claimed ({diff}{_single_values(c)})"
    ci = f"95% CI [{_num(k.ci_low)}, {_num(k.ci_high)}]"
    tests = (f"paired t-test {_p(k.t_p)}{_holm(c, c.p_adjusted)}, Wilcoxon {_p(k.rank_p)}, "
             f"d_z = {_num(k.effect_size)}"
             if k.design == "paired" else
             f"unpaired (too few common seeds): Welch t-test {_p(k.t_p)}{_holm(c, c.p_adjusted)}, Mann-Whitney "
             f"{_p(k.rank_p)}, "
             f"d = {_num(k.effect_size)}")
    e = c.equivalence
    tost = f"{_tost(e, c)}{_holm(c, c.p_equivalence_adjusted)}" if e is not None else ""
    if _equivalent(c, alpha):
        text = (f"{c.name('lora')} matches {c.name('full')} within {_margin(c.margin)} of {c.primary_metric} at "
                f"alpha = {alpha:g} with {_seed_phrase(c)} ({tost}; {diff}, {ci}; {tests})")
        if _significant(c, alpha):
            text += (f"; the difference itself, {_pts(k.mean_diff)} points, is significant but lies inside the "
                     f"{_margin(c.margin)} margin")
        return text
    if _significant(c, alpha):
        better, worse = ("lora", "full") if k.mean_diff > 0 else ("full", "lora")
        return (f"{c.name(better)} is significantly better than {c.name(worse)} at alpha = {alpha:g} with "
                f"{_seed_phrase(c)}, by {_num(abs(k.mean_diff))} points of {c.primary_metric} "
                f"({diff}, {ci}; {tests})")
    text = f"no significant difference at alpha = {alpha:g} with {_seed_phrase(c)} ({diff}, {ci}; {tests})"
    if e is not None and not math.isnan(e.p):
        text += f"; {_equivalence_not_claimed(c, alpha, tost)}"
    return text


def _equivalence_not_claimed(c: TaskComparison, alpha: float, evidence: str) -> str:
    """Why "matches" is not said: not shown, or shown while the arms' learning could not be checked."""
    if c.equivalence_p_adjusted < alpha:
        return (f"the equivalence test puts {_minus(c)} within {_margin(c.margin)} ({evidence}), but 'matches' is "
                f"not said while it is unknown whether the arms learned the task")
    return f"equivalence within {_margin(c.margin)} is not shown ({evidence})"


def describe_fallback(c: TaskComparison, alpha: float, diff: str) -> str:
    """No seed-level verdict (too few seeds, or no spread): say why, and decide on the example-level tests."""
    k = c.seeds
    assert k is not None
    reason = c.seed_level_reason
    if c.too_few_seeds:
        below = ("; the example-level evidence below covers test-set noise only and decides nothing"
                 if c.example_tests else "")
        return f"no seed-level verdict ({reason}): nothing is claimed{below} ({diff}{_single_values(c)})"
    if k.undefined:
        head = f"the seed-level test is undefined with {_seed_phrase(c)} ({reason})"
    else:
        head = f"no seed-level verdict ({reason})"
    if c.decided_on != "examples":
        return f"{head}, and there is no example-level test to fall back on: nothing is claimed ({diff})"
    t = c.fallback_test
    evidence = (f"{t['test']} on {_on(t)}{_counts(t, c)}, {_p(t['p'])}{_holm(c, c.p_adjusted)}" if t is not None
                else "")
    instead = "on the example-level evidence instead (test-set noise only, not seed variance)"
    e = c.example_equivalence
    bound = (f"the arms' predictions differ on {e.discordant} of {e.n} test examples in any common seed, so "
             f"|{_minus(c)}| <= {_num(e.bound)} points at {100 * (1 - e.alpha):g}% (exact binomial bound"
             f"{', unadjusted' if c.family_size > 1 else ''}, {_p(e.p)}"
             f"{_holm(c, c.p_equivalence_adjusted)})" if e is not None else "")
    if _equivalent(c, alpha):
        text = (f"{head}; {instead}, {c.name('lora')} matches {c.name('full')} within {_margin(c.margin)} of "
                f"{c.primary_metric}: {bound}")
        if _significant(c, alpha) and evidence:
            text += f"; the difference itself is significant but inside the margin ({evidence})"
        return text
    if _significant(c, alpha):
        better, worse = ("lora", "full") if c.decision_diff > 0 else ("full", "lora")
        return (f"{head}; {instead}, {c.name(better)} is significantly better than {c.name(worse)} at alpha = "
                f"{alpha:g} ({evidence})")
    no_diff = f"there is no significant difference at alpha = {alpha:g} ({evidence})" if evidence else \
        "there is no example-level test of the difference"
    eq = (_equivalence_not_claimed(c, alpha, bound) if e is not None else "equivalence cannot be shown")
    return f"{head}; {instead} {no_diff}, and {eq}"


def _on(t: dict) -> str:
    comparison = str(t["comparison"])
    return comparison if comparison.startswith("seed ") else f"the {comparison}"


def _holm(c: TaskComparison, adjusted: float | None) -> str:
    """", Holm-adjusted over 8 hypotheses p = 0.048" (nothing for a family of one)."""
    if adjusted is None or c.family_size < 2 or math.isnan(adjusted):
        return ""
    return f", Holm-adjusted over {c.family_size} hypotheses {_p(adjusted)}"


def _margin(m: float) -> str:
    return f"±{m:g} point" + ("" if m == 1 else "s")


def _unadjusted(c: TaskComparison) -> str:
    return " (unadjusted)" if c.family_size > 1 else ""


def _tost(e, c: TaskComparison | None = None) -> str:
    level = f"{100 * (1 - 2 * e.alpha):g}%"
    unadjusted = _unadjusted(c) if c is not None else ""
    return f"TOST {_p(e.p)}, {level} CI [{_num(e.ci_low)}, {_num(e.ci_high)}]{unadjusted}"


def _seed_phrase(c: TaskComparison) -> str:
    k = c.seeds
    assert k is not None
    if k.design == "paired" or (k.design == "none" and c.lora.n == c.full.n == len(c.common_seeds)):
        return _count(len(c.common_seeds), "seed")
    return (f"{_count(c.lora.n, c.short('lora') + ' seed')} and {_count(c.full.n, c.short('full') + ' seed')} "
            f"({len(c.common_seeds)} shared)")


def _single_values(c: TaskComparison) -> str:
    if c.lora.n == 1 and c.full.n == 1:
        return f"; {c.short('lora')} {_num(c.lora.mean)}, {c.short('full')} {_num(c.full.mean)}"
    return ""


def describe_efficiency(r: dict, c: TaskComparison | None = None) -> str:
    """"; LoRA trains 0.9% of the parameters and peaks at 38% of full's memory" (parts that are known; the
    arms named as `c` names them)."""
    arm, reference = (c.short("lora"), c.short("full")) if c is not None else ("LoRA", "full")
    parts = []
    share = r.get("lora_trainable_share")
    if share is not None and not math.isnan(share):
        parts.append(f"trains {_percent(share)} of the parameters")
    mem = r.get("memory_ratio")
    if mem is not None and not math.isnan(mem):
        parts.append(f"peaks at {_percent(mem)} of {reference}'s memory")
    elif r.get("memory_kinds") and " vs " in str(r["memory_kinds"]):
        parts.append(f"has peak memory not comparable with {reference}'s ({r['memory_kinds']})")
    return f"; {arm} {' and '.join(parts)}" if parts else ""


def describe_example_tests(tests: list[dict], alpha: float, c: TaskComparison | None = None) -> str:
    """Summary of the per-example tests: how many seed pairs reject, and the combined test."""
    if not tests:
        return ""
    per_seed = [t for t in tests if str(t["comparison"]).startswith("seed ")]
    combined = [t for t in tests if not str(t["comparison"]).startswith("seed ")]
    name = "McNemar" if tests[0]["test"].startswith("McNemar") else tests[0]["test"]
    parts = []
    if len(per_seed) == 1:
        t = per_seed[0]
        parts.append(f"per-example {name} on seed {t['seeds']}: {_p(t['p'])}{_counts(t, c)}")
    elif per_seed:
        n_sig = sum(t["p"] < alpha for t in per_seed)
        parts.append(f"per-example {name}: {n_sig} of {len(per_seed)} seed pairs significant at alpha = {alpha:g}")
    for t in combined:
        parts.append(f"{t['comparison']}: {_p(t['p'])}{_counts(t, c)}")
    return ("Example-level evidence (test-set noise only, not seed variance): " + "; ".join(parts) + ".")


def _counts(t: dict, c: TaskComparison | None = None) -> str:
    arm, reference = (c.short("lora"), c.short("full")) if c is not None else ("LoRA", "full")
    if t.get("b") is not None and not _isnan(t.get("b")):
        return f" (b = {int(t['b'])} only {arm} right, c = {int(t['c'])} only {reference} right)"
    return (f" ({arm} - {reference} = {_pts(t['mean_diff'])} points, 95% CI [{_num(t['ci_low'])}, "
            f"{_num(t['ci_high'])}])")


def _minus(c: TaskComparison) -> str:
    """"LoRA - full": the difference the comparison reports, arm minus reference."""
    return f"{c.short('lora')} - {c.short('full')}"


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


def _significant(c: TaskComparison, alpha: float) -> bool:
    return c.decision_p_adjusted < alpha      # False for NaN: no test, nothing claimed


def _equivalent(c: TaskComparison, alpha: float) -> bool:
    """Equivalence shown (Holm-adjusted) and both arms' learning checked: two arms that learned nothing match."""
    return c.equivalence_p_adjusted < alpha and not c.unknown_learning


# ---------------------------------------------------------------- the verdict table (one row per task)

VERDICT_WORDS = ("matches", "better", "worse", "inconclusive", "not learned", "only LoRA learned",
                 "only full learned", "no comparison")


def verdict_word(c: TaskComparison, alpha: float = 0.05) -> str:
    """The verdict in a word, by the module's rules: no comparison (an arm has no completed run); not learned /
    only LoRA learned / only full learned (an arm is not shown to beat the best constant predictor); matches
    (equivalence within the margin shown, Holm-adjusted); better / worse (LoRA against full, significant after
    the Holm adjustment; on the example-level tests when the seed level cannot decide); inconclusive."""
    if c.seeds is None:
        return "no comparison"
    if c.unlearned_arms:
        if c.learned_arms:
            return f"only {c.short(c.learned_arms[0])} learned"
        return "not learned"
    if _equivalent(c, alpha):
        return "matches"
    if _significant(c, alpha):
        return "better" if c.decision_diff > 0 else "worse"
    return "inconclusive"


def verdict_row(c: TaskComparison, sentence: str, alpha: float = 0.05) -> dict:
    """One task's row of the verdict table (what verdicts.json holds per task and the report's first table
    shows): means in points, LoRA - full with its interval, the word, the seeds and each seed's difference.

    `p` is the seed-level t-test's (NaN when undefined or not run); `p_decision` the raw p of the difference
    test the decision rests on (`decided_on`: "seeds", "examples" -- when the seed level cannot decide -- or
    None) and `p_adjusted` its Holm adjustment; `p_equivalence` / `p_equivalence_adjusted` the same for the
    equivalence test (TOST over seeds, or the example-level discordance test); `family_size`: the hypotheses in
    that Holm family. `ci_low` / `ci_high` are NaN when the seed-level test is undefined. `baseline`: {"name",
    "value" (points)} of the best constant predictor on test, None when no predictions. `learned`: per arm
    {"state": shown | not shown | unknown, "p", "p_adjusted", "test", "estimate", "n", "level", "reason"}."""
    k = c.seeds
    nan = math.nan
    lora_by_seed = dict(zip(c.lora_seeds, c.lora_values, strict=True)) if c.lora_values else {}
    full_by_seed = dict(zip(c.full_seeds, c.full_values, strict=True)) if c.full_values else {}
    e = c.example_equivalence
    return {
        "task": c.task, "metric": c.primary_metric, "word": verdict_word(c, alpha), "sentence": sentence,
        "lora": c.lora.mean if c.lora.n else nan, "full": c.full.mean if c.full.n else nan,
        "difference": k.mean_diff if k is not None else nan,
        "ci_low": k.ci_low if k is not None else nan, "ci_high": k.ci_high if k is not None else nan,
        "design": k.design if k is not None else "none",
        "p": k.t_p if k is not None else nan,
        "margin": c.margin if k is not None else nan,
        "n_seeds": len(c.common_seeds) if k is not None and k.design == "paired" else min(c.lora.n, c.full.n),
        "seed_differences": {s: lora_by_seed[s] - full_by_seed[s] for s in c.common_seeds
                             if s in lora_by_seed and s in full_by_seed},
        "p_adjusted": c.decision_p_adjusted, "p_decision": c.decision_p, "decided_on": c.decided_on,
        "p_equivalence": c.equivalence_p, "p_equivalence_adjusted": c.equivalence_p_adjusted,
        "family_size": c.family_size, "compared": c.compared,
        "example_equivalence": e.as_dict() if e is not None and c.decided_on == "examples" else None,
        "baseline": c.baseline.as_dict() if c.baseline is not None else None,
        "learned": {arm: t.as_dict() for arm, t in c.learned.items()}, "learn_margin": c.learn_margin,
        "unlearned_arms": c.unlearned_arms,
        "seed_test_undefined_reason": c.seed_level_reason,
    } | _arm_fields(c)


def _arm_fields(c: TaskComparison) -> dict:
    """With named arms: which arm the row compares with which (`lora` / `full` then hold the arm's and the
    reference's means, `learned` is keyed lora / full the same way). Nothing for the study's two arms."""
    if c.pair == c.task:
        return {}
    return {"pair": c.pair, "arm": c.arm, "reference": c.reference, "arm_label": c.name("lora"),
            "reference_label": c.name("full")}


def verdict_methods_text() -> list[str]:
    """Paragraphs for the report's methods section on how the numbers become a word: the learned gate, the
    one Holm family of both kinds of claim, the seed-level minimum and the example-level fallback, and the
    example-level test per metric."""
    return [
        "Learned first. Before LoRA is compared with full fine-tuning, each arm is tested on its own against the "
        "best constant predictor on test: always the test split's majority class (accuracy), always the positive "
        "class (MRPC F1), always no answer (SQuAD v2 F1 = the share of unanswerable questions, 50.07 on the "
        "official dev set). The test is one-sided (H0: the arm's score is at most the baseline plus the learning "
        "margin, `--learn-margin`, default 0): with 3 seeds or more that differ, a t-test over the arm's seed "
        "scores (training noise) and, with predictions on disk, a paired bootstrap over the test examples of the "
        "arm's seed-averaged score minus the constant predictor's (test-set noise, which the seed scores share "
        "with a baseline scored on the same test set): both must reject; otherwise the bootstrap alone (test-set "
        "noise only). These tests are one Holm family over every arm of every task with both arms, decided "
        "before and independently of the LoRA - full comparison. An arm not shown to learn stops the comparison "
        "('not learned', or 'only LoRA / full learned'): with a few seeds that is absence of evidence, not "
        "evidence that it did not learn. Without predictions on disk the baseline cannot be scored: the report "
        "says learning could not be checked and does not say 'matches' (two arms that learned nothing match).",
        "One family, both kinds of claim. Each task with both arms has two hypotheses: the difference (two-sided "
        "t-test; 'better' / 'worse') and equivalence within the margin M (TOST; 'matches'); at most one of "
        "'the difference is 0' and 'the difference is at or beyond M' is true. All of them, over all such tasks, "
        "are one Holm family (Holm 1979), fixed before any test (a task the learned test stops keeps its place "
        "and makes no claim), so the chance of any false comparison claim of either kind is at most alpha "
        "(unadjusted, four equivalence claims at 0.05 each would err with probability up to about 0.19); the "
        "learned family has its own alpha. Intervals and bounds in the sentences are at the unadjusted level "
        "and marked so; the words use the adjusted p-values. The "
        "study's question is equivalence: when equivalence is shown the word is 'matches', also when a small "
        "difference inside the margin is itself significant (the sentence states it). Under each inconclusive "
        "verdict the report says how many seeds the equivalence test would need: the exact power of the paired "
        "TOST (both one-sided tests share the sample sd: Owen's Q, computed by integrating over the sd's "
        "distribution) at a true difference of 0, at alpha divided by the family's hypotheses (Holm rejects "
        "whatever that Bonferroni level rejects, so this is the least power the report's test will have), "
        "planning with the 80% one-sided upper confidence bound of the observed sd of LoRA - full (Browne 1995: "
        "a 3-seed sd is itself very uncertain); `tunebench plan seeds` plans with other settings.",
        "Three seeds, and spread. A verdict needs at least 3 seeds per method (a t-test on 2 has one degree of "
        "freedom); with fewer, nothing is claimed and the example-level tests are shown as evidence only (they "
        "compare two trained models, not two methods). With 3 or more but no spread -- LoRA - full the same on "
        "every seed (a metric moving in steps of one test example can do that, e.g. 0.36 points on RTE) -- the "
        "t-test, its interval and the TOST are undefined, seed variance is gone, and the decision rests on the "
        "example level, said so in the sentence (test-set noise only): the difference on the seed-averaged "
        "predictions (in the Holm family like any other), and "
        "equivalence on an exact bound: when the arms' predictions differ on D of n test examples (in any "
        "common seed), |LoRA - full| is at most D / n (accuracy, per-question F1) or 2D / P (F1 with P positive "
        "examples), and the one-sided exact binomial (Clopper-Pearson) bound on the share of such examples "
        "shows equivalence when it lies inside the margin. Identical predictions on every example are strong "
        "evidence at the example level, but only when the test set is large enough: at a 1-point margin, "
        "zero disagreements on RTE's 277 examples do not suffice (bound 1.08 points), on SST-2's 872 they do; "
        "on MRPC's F1 (408 examples, 279 positive) even zero gives a bound of 2.14 points.",
        "Example-level tests are on each task's verdict metric: per seed pair, McNemar where it is accuracy "
        "(SST-2, RTE), and on the seed average a paired bootstrap of each example's correctness averaged over "
        "seeds, whose mean is exactly the seed-mean accuracy difference (a majority vote over seeds is not: with "
        "two seeds it favours the steadier arm); MRPC's F1 (positive class) is not a mean over examples, so it "
        "gets a paired bootstrap over examples that recomputes each arm's F1 on every resample (the "
        "seed-averaged F1 for the combined version); SQuAD v2, a paired bootstrap of per-question F1.",
    ]
