"""One honest sentence per task (pure: a TaskComparison and efficiency ratios in, text out).

Rules: the decision is the seed-level t-test at `alpha` (paired when 2+ seeds are shared, Welch when the
arms ran different seeds). Absence of evidence is not evidence of equivalence: "LoRA matches full
fine-tuning" is said only when the equivalence test (TOST, same seeds and design) against the pre-declared
margin succeeds at `alpha`, and it is said with the margin; otherwise a non-significant result is "no
significant difference" with a note that equivalence was not shown. Never "equal". With too few seeds the
sentence says no significance can be claimed. Example-level tests are added as a second sentence: they
speak to test-set noise only.
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
    text = f"{c.task}: {describe_seed_result(c, alpha)}{describe_efficiency(ratios or {})}."
    evidence = describe_example_tests(c.example_tests, alpha)
    return f"{text} {evidence}" if evidence else text


def describe_seed_result(c: TaskComparison, alpha: float) -> str:
    k = c.seeds
    assert k is not None
    diff = f"{c.primary_metric}: LoRA - full = {_pts(k.mean_diff)} points"
    if k.design == "none" or math.isnan(k.t_p):
        return f"with {_seed_phrase(c)} no significance can be claimed ({diff}{_single_values(c)})"
    ci = f"95% CI [{_num(k.ci_low)}, {_num(k.ci_high)}]"
    tests = (f"paired t-test {_p(k.t_p)}, Wilcoxon {_p(k.rank_p)}, d_z = {_num(k.effect_size)}"
             if k.design == "paired" else
             f"no common seeds: Welch t-test {_p(k.t_p)}, Mann-Whitney {_p(k.rank_p)}, d = {_num(k.effect_size)}")
    e = c.equivalence
    shown = e is not None and e.equivalent
    if k.t_p >= alpha and shown:
        return (f"LoRA matches full fine-tuning within {_margin(e.margin)} of {c.primary_metric} at alpha = "
                f"{e.alpha:g} with {_seed_phrase(c)} ({_tost(e)}; {diff}, {ci}; {tests})")
    if k.t_p >= alpha:
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
    name = tests[0]["test"].split(" ")[0] if tests[0]["test"].startswith("McNemar") else "paired bootstrap"
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
    """The verdict in a word: matches (equivalence shown), better / worse (LoRA against full, significant),
    inconclusive (neither), no comparison (an arm has no completed run)."""
    k, e = c.seeds, c.equivalence
    if k is None:
        return "no comparison"
    significant = k.design != "none" and not math.isnan(k.t_p) and k.t_p < alpha
    if significant:
        return "better" if k.mean_diff > 0 else "worse"
    if e is not None and e.equivalent:
        return "matches"
    return "inconclusive"


def verdict_row(c: TaskComparison, sentence: str, alpha: float = 0.05) -> dict:
    """One task's row of the verdict table (what verdicts.json holds per task and the report's first table
    shows): means in points, LoRA - full with its interval, the word, the seeds and each seed's difference."""
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
    }
